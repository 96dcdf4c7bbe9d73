"""Local stand-ins for the model providers: tests, demos and benchmarks without a network.

One small HTTP server on a loopback port speaks both providers' APIs closely enough for the
official SDKs: OpenAI's chat completions (``POST /v1/chat/completions``, ``Authorization:
Bearer``) and Anthropic's messages (``POST /v1/messages``, ``x-api-key`` or bearer), with
their reply and error shapes. Its answers are deterministic (built from the prompt, with
word counts as usage), so tests can compare them. Faults are injected per API model,
consumed one request at a time::

    with StandIn(latency=0.5) as server:
        server.fail("gpt-4", Fault.rate_limited(retry_after=1), Fault.server_error())
        server.fail_always("claude-3-opus-20240229", Fault.server_error())
        settings = server.settings()          # OPENAI_BASE_URL, ANTHROPIC_BASE_URL, keys

``python -m m11_tenant.rag.standins --latency 0.5`` runs one until interrupted (the
benchmark does this) and prints its URL and keys.

It is a stand-in, not a model: it never reads the passages for meaning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from m11_tenant.settings import Settings

OPENAI_KEY = "sk-standin-openai"
ANTHROPIC_KEY = "sk-ant-standin"
#: How long a ``hang`` fault holds the request (far past any per-attempt timeout in tests).
HANG_SECONDS = 60.0


@dataclass(frozen=True)
class Fault:
    """One injected failure: an HTTP status (with headers and an error body), a hang past the
    caller's timeout, or a 200 reply whose body is not JSON."""

    kind: str  # "status", "hang" or "malformed"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def rate_limited(cls, retry_after: float = 1) -> Fault:
        return cls("status", 429, (("retry-after", f"{retry_after:g}"),))

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls("status", status)

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("status", 401)

    @classmethod
    def hang(cls) -> Fault:
        return cls("hang")

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")


@dataclass
class Seen:
    """One request the stand-in answered (or failed on purpose)."""

    api: str  # "openai" or "anthropic"
    model: str
    outcome: str  # "ok", "401", "429", "500", "hang", "malformed", "400"
    body: dict[str, Any] = field(repr=False)


class StandIn:
    """A provider stand-in on ``127.0.0.1`` and a free port, in a background thread.

    Parameters:
        latency: seconds every answer waits before it is sent (a slow model).
        openai_key / anthropic_key: the keys it accepts; any other key gets a 401.
    """

    def __init__(self, *, latency: float = 0.0, openai_key: str = OPENAI_KEY,
                 anthropic_key: str = ANTHROPIC_KEY):
        self.latency = latency
        self.keys = {"openai": openai_key, "anthropic": anthropic_key}
        self.requests: list[Seen] = []
        self.in_flight = 0  # answers being prepared right now (waiting out ``latency``)
        self.max_in_flight = 0  # the most at one moment since the last reset
        self._faults: dict[str, deque[Fault]] = {}
        self._always: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # -- fault injection ---------------------------------------------------------------------
    def fail(self, api_model: str, *faults: Fault) -> None:
        """The next requests for ``api_model`` fail with ``faults``, in order, then answer."""
        with self._lock:
            self._faults.setdefault(api_model, deque()).extend(faults)

    def fail_always(self, api_model: str, fault: Fault) -> None:
        """Every request for ``api_model`` fails with ``fault`` (until :meth:`reset`)."""
        with self._lock:
            self._always[api_model] = fault

    def reset(self) -> None:
        """Forget faults and recorded requests."""
        with self._lock:
            self._faults.clear()
            self._always.clear()
            self.requests.clear()
            self.max_in_flight = 0

    def _next_fault(self, model: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(model)
            if queue:
                return queue.popleft()
            return self._always.get(model)

    # -- where it listens ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **overrides: Any) -> Settings:
        """Settings that point both providers here (nothing read from the environment or
        ``.env``); ``overrides`` on top, e.g. ``m11_model_timeout=0.5``."""
        values: dict[str, Any] = {
            "openai_api_key": self.keys["openai"], "openai_base_url": f"{self.url}/v1",
            "anthropic_api_key": self.keys["anthropic"], "anthropic_base_url": self.url,
            "openai_compatible_base_url": None, "openai_compatible_api_key": None,
            "database_url": "sqlite:///unused.db", "redis_url": None, "m11_admin_key": None,
            **overrides}
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    def env(self) -> dict[str, str]:
        """The same, as environment variables (for a subprocess: the CLI, the server)."""
        return {"OPENAI_API_KEY": self.keys["openai"], "OPENAI_BASE_URL": f"{self.url}/v1",
                "ANTHROPIC_API_KEY": self.keys["anthropic"], "ANTHROPIC_BASE_URL": self.url}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> StandIn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it every answer (headers and body
        # written separately) waits ~40 ms for the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", access_log=False,
                                lifespan="off", interface="asgi3", timeout_graceful_shutdown=1,
                                backlog=2048)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"standin-{self.port}", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the stand-in server did not start")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)  # release hanging requests
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the HTTP side (a bare ASGI app) --------------------------------------------------------
    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self._stopping is None:
            self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        path = scope["path"]
        api = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}.get(path)
        if scope["method"] != "POST" or api is None:
            await _send(send, 404, {"error": {"type": "not_found_error",
                                              "message": f"no route {path}"}})
            return
        try:
            request = json.loads(body)
            model = str(request["model"])
        except (ValueError, KeyError, TypeError):
            await _send(send, 400, _error(api, "invalid_request_error", "body is not a request"))
            return
        if not self._authorized(api, headers):
            self._seen(api, model, "401", request)
            await _send(send, 401, _error(api, "authentication_error", "invalid x-api-key"
                                          if api == "anthropic" else "Incorrect API key"))
            return
        fault = self._next_fault(model)
        if fault is not None:
            await self._fail(send, api, model, fault, request)
            return
        if api == "anthropic" and not 0 <= float(request.get("temperature", 1)) <= 1:
            self._seen(api, model, "400", request)
            await _send(send, 400, _error(api, "invalid_request_error",
                                          "temperature: range: 0..1"))
            return
        self.in_flight += 1  # the server's one event loop: no lock needed
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        self._seen(api, model, "ok", request)
        await _send(send, 200, answer(api, model, request))

    def _authorized(self, api: str, headers: dict[str, str]) -> bool:
        """OpenAI sends ``Authorization: Bearer``; Anthropic's SDK sends ``x-api-key`` or,
        in its 2.x releases, the bearer form."""
        key = self.keys[api]
        if headers.get("authorization") == f"Bearer {key}":
            return True
        return api == "anthropic" and headers.get("x-api-key") == key

    def _seen(self, api: str, model: str, outcome: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(Seen(api, model, outcome, body))

    async def _fail(self, send: Any, api: str, model: str, fault: Fault,
                    request: dict[str, Any]) -> None:
        if fault.kind == "hang":
            self._seen(api, model, "hang", request)
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HANG_SECONDS)
            await _send(send, 504, _error(api, "timeout_error", "hung on purpose"))
        elif fault.kind == "malformed":
            self._seen(api, model, "malformed", request)
            await _send_raw(send, 200, b'{"id": "truncated', ())
        else:
            self._seen(api, model, str(fault.status), request)
            kind = {401: "authentication_error", 429: "rate_limit_error"}.get(
                fault.status, "api_error")
            await _send(send, fault.status, _error(api, kind, f"injected HTTP {fault.status}"),
                        fault.headers)


def _words(text: str) -> list[str]:
    return text.split()


def answer(api: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    """A deterministic reply in the API's shape: the prompt's last line, echoed, within
    ``max_tokens`` words, citing passage [1]; usage in words."""
    prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
    lines = [line for line in prompt.splitlines() if line.strip()]
    limit = max(1, int(request.get("max_tokens") or 16))
    words = [f"[stand-in {model}]", "about:", *_words(lines[-1] if lines else ""), "[1]"]
    text = " ".join(words[:limit])
    prompt_tokens, completion_tokens = len(_words(prompt)), len(text.split())
    if api == "anthropic":
        return {"id": "msg_standin", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}}
    return {"id": "chatcmpl-standin", "object": "chat.completion", "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def _error(api: str, kind: str, message: str) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def _send(send: Any, status: int, doc: dict[str, Any],
                headers: tuple[tuple[str, str], ...] = ()) -> None:
    await _send_raw(send, status, json.dumps(doc).encode(), headers)


async def _send_raw(send: Any, status: int, body: bytes,
                    headers: tuple[tuple[str, str], ...]) -> None:
    raw = [(b"content-type", b"application/json"),
           (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m11_tenant.rag.standins",
                                     description="run a provider stand-in until interrupted")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args(argv)
    server = StandIn(latency=args.latency).start()
    print(json.dumps({"url": server.url, **server.env()}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
