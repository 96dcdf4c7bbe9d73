"""A real server and a real browser for the console's end-to-end tests.

The server is uvicorn on a free loopback port, in a thread of the test process, serving
``create_app`` over an SQLite repository in a temporary directory. The browser is Debian's
``chromium`` (``apt-get install chromium``) driven by Playwright: Playwright's own browser
download is never used. Without a browser these tests skip and say why; with
``M11_REQUIRE_BROWSER=1`` (``.ci/run``) a missing browser fails them instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import uvicorn

from m11_tenant.app import create_app
from m11_tenant.cache import ConfigCache
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.settings import Settings
from m11_tenant.store import open_store

CHROMIUM = os.environ.get("M11_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
SERVER_START_TIMEOUT = 30  # seconds; a guard against a hang, not an assertion


def _unavailable(reason: str) -> None:
    if os.environ.get("M11_REQUIRE_BROWSER") == "1":
        pytest.fail(f"M11_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -r requirements.txt)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` "
                     "(or point M11_CHROMIUM at one) to run the console's browser tests")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class LiveServer:
    """The app on ``base_url``, with the repository and admin key tests set up data with."""

    def __init__(self, repo: TenantConfigRepository, admin_key: str, base_url: str):
        self.repo, self.admin_key, self.base_url = repo, admin_key, base_url

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("console-e2e") / "tenants.db"
    repo = TenantConfigRepository(open_store(f"sqlite:///{db}"),
                                  ConfigCache(fakeredis.FakeRedis(server=fakeredis.FakeServer())))
    admin_key = "m11a_" + secrets.token_urlsafe(24)
    app = create_app(repo, settings=Settings(m11_admin_key=admin_key,
                                             m11_rate_config_writes="off",
                                             m11_rate_previews="off"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the console test server did not start")
        time.sleep(0.05)
    yield LiveServer(repo, admin_key, f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=SERVER_START_TIMEOUT)
    sock.close()
    repo.close()


@pytest.fixture
def page(browser, live_server: LiveServer) -> Iterator:
    """A fresh browser context (no cookies) at desktop size; every request it makes is
    recorded in ``page.requested`` so tests can check nothing leaves the machine."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # Generous: a wait limit, not a speed check (CI machines run other jobs at the same time).
    context.set_default_timeout(30_000)
    from playwright.sync_api import expect  # installed: the browser fixture checked

    expect.set_options(timeout=30_000)  # expect() has its own default (5 s): the same limit
    tab = context.new_page()
    tab.requested = []
    tab.on("request", lambda request: tab.requested.append(request.url))
    yield tab
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
