"""uvicorn's HTTP/1.1 protocol with a request-header deadline, against slow clients.

uvicorn closes a connection that is idle after a response (``timeout_keep_alive``), but
any byte cancels that timer, and nothing limits how long the request headers may take:
a client that sends one header line every few seconds holds a connection (and a file
descriptor) for as long as it likes ("slowloris"). This protocol gives each request's
headers ``header_timeout`` seconds from the moment the connection opens (or the previous
response ends); a connection still without complete headers then is closed. Once the
headers are in, the app takes over: it reads a body under its own deadline
(:func:`m11_tenant.web.body.read_body`, a 408).

Behind a reverse proxy (nginx ``client_header_timeout`` / ``client_body_timeout``), the
proxy does this first; the deadline here still protects a server exposed directly.

The deadline sits on uvicorn's fastest parser: ``httptools`` (C, installed with the
package's requirements) when it is importable, which is also what plain ``uvicorn`` picks
by default; otherwise the pure-Python ``h11``. On a 2-core machine the parser is a large
share of a cached ``GET /config`` (see the README's serving-speed figures).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from m11_tenant.settings import HEADER_TIMEOUT


class _HeaderDeadline:
    """Mixed into a uvicorn HTTP protocol (h11 or httptools: both keep the request being
    served as ``self.cycle`` and call ``on_response_complete``): closes a connection whose
    request headers are too slow."""

    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    logger: Any
    client: Any

    def __init__(self, *args: Any, header_timeout: float = HEADER_TIMEOUT, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._cycle_at_arming: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own deadline

    def _arm(self) -> None:
        self._disarm()
        self._cycle_at_arming = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """Close the connection unless a request's headers arrived since arming (a new
        cycle) or a response is still being produced."""
        self._deadline = None
        cycle = self.cycle
        waiting_for_headers = cycle is self._cycle_at_arming and (
            cycle is None or cycle.response_complete)
        if waiting_for_headers and not self.transport.is_closing():
            self.logger.info("closing a connection from %s: no complete request headers "
                             "within %.0f s", self.client, self.header_timeout)
            self.transport.close()


class H11DeadlineProtocol(_HeaderDeadline, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the header deadline."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: h11 it is
    HeaderDeadlineProtocol: type[_HeaderDeadline] = H11DeadlineProtocol
else:
    class HttpToolsDeadlineProtocol(_HeaderDeadline, HttpToolsProtocol):
        """uvicorn's httptools (C parser) protocol with the header deadline."""

    HeaderDeadlineProtocol = HttpToolsDeadlineProtocol


def protocol(header_timeout: float = HEADER_TIMEOUT) -> partial[_HeaderDeadline]:
    """What ``uvicorn.run(http=...)`` takes: the protocol with its deadline (picklable, so
    it also reaches ``--workers`` processes)."""
    return partial(HeaderDeadlineProtocol, header_timeout=header_timeout)
