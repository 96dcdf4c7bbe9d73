"""Slow clients are cut off: a header deadline in the server protocol, a body deadline in
the app. A real uvicorn server on a free loopback port, with short deadlines; the tests
check what the server does to the connection, not how fast it does it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from api_support import ADMIN_KEY, make_api

from m11_tenant.web.server import HeaderDeadlineProtocol, protocol

HEADER_TIMEOUT = 0.5
GIVE_UP = 5.0  # seconds a test waits for the server before it fails


async def slow_app(scope, receive, send):
    """Answers after 3 x the header deadline: a slow response must not be cut."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(HEADER_TIMEOUT * 3)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def serving(app, http=None) -> Iterator[int]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http or protocol(HEADER_TIMEOUT),
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + GIVE_UP
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(GIVE_UP)


def closed_by_server(sock: socket.socket) -> bool:
    """Keep sending header lines (as a slowloris does) until the server hangs up."""
    deadline = time.monotonic() + GIVE_UP
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"X-Slow: 1\r\n")
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def request(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP) as sock:
        sock.sendall(raw)
        return sock.recv(65536)


def test_a_connection_trickling_its_headers_is_closed(tmp_path, sqlite_repo):
    api = make_api(sqlite_repo)
    with serving(api.app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(sock)
        # ... while a client that sends its request at once is served as usual.
        assert request(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 200")


def test_the_deadline_restarts_for_each_request_on_a_kept_alive_connection(sqlite_repo):
    api = make_api(sqlite_repo)
    with serving(api.app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(GIVE_UP)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the second request trickles
        assert closed_by_server(sock)


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_the_deadline_holds_on_both_parsers(sqlite_repo, parser):
    """``serve`` runs on httptools when it is installed, on h11 otherwise."""
    from functools import partial

    from m11_tenant.web import server

    # httptools is pinned in requirements.txt: its absence here is a failure, not a skip
    made = server.H11DeadlineProtocol if parser == "h11" else server.HttpToolsDeadlineProtocol
    api = make_api(sqlite_repo)
    with serving(api.app, partial(made, header_timeout=HEADER_TIMEOUT)) as port, \
            socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(GIVE_UP)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the second request trickles
        assert closed_by_server(sock)


def test_a_slow_response_is_not_cut(sqlite_repo):
    with serving(slow_app) as port:
        assert request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_a_trickled_body_gets_a_408(sqlite_repo, tenant_id):
    api = make_api(sqlite_repo, m11_body_timeout=HEADER_TIMEOUT)
    with serving(api.app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(GIVE_UP)
        sock.sendall(f"POST /config/{tenant_id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     f"{ADMIN_KEY}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 100\r\n\r\n{{\"config\":".encode())
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after the 408 (its headers and
            answer += chunk               # body may arrive in separate segments)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    assert sqlite_repo.store.get(tenant_id) is None


def test_the_protocol_factory_pickles_for_worker_processes():
    import pickle

    made = pickle.loads(pickle.dumps(protocol(7)))
    assert made.func is HeaderDeadlineProtocol and made.keywords == {"header_timeout": 7}


@pytest.mark.parametrize("env,value", [("M11_HEADER_TIMEOUT", "2.5"), ("M11_BODY_TIMEOUT", "4")])
def test_the_deadlines_come_from_the_settings(monkeypatch, env, value):
    from m11_tenant.settings import Settings

    monkeypatch.setenv(env, value)
    assert getattr(Settings(), env.lower()) == float(value)
