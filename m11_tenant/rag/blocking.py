"""The synchronous door to the async pipeline: one background event loop per process.

The serving path is async (``await pipeline.aquery(...)``); notebooks, the CLI and scripts
call ``pipeline.query(...)``. ``asyncio.run`` per call would not do: Jupyter already runs a
loop in the main thread (``asyncio.run`` refuses to start there), and a fresh loop per call
would throw away the SDKs' connection pools. So synchronous calls are handed to one
long-lived loop in a daemon thread and the caller waits for the result.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_closers: list[Callable[[], Awaitable[None]]] = []


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="m11-rag-loop",
                                       daemon=True)
            _thread.start()
        return _loop


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and return its result (or raise its error).

    Raises:
        RuntimeError: when called from a coroutine on the background loop itself (it would
            wait for itself forever): ``await`` the async method instead.
    """
    loop = _background_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("a synchronous pipeline call from inside its own event loop; "
                           "await the async method (aquery / arun) instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def is_background_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return loop is _loop


def close_at_exit(aclose: Callable[[], Awaitable[None]]) -> None:
    """Run ``aclose()`` on the background loop when the interpreter exits: connections it
    opened are closed cleanly instead of being reported as unclosed by the garbage collector."""
    _closers.append(aclose)


@atexit.register
def _close_all() -> None:
    loop = _loop
    if loop is None or not loop.is_running():
        return
    for aclose in _closers:
        # Exiting anyway: a connection that will not close is left to the OS.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(aclose(), loop).result(timeout=5)
