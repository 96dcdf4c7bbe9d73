"""`make lab` as a learner meets it: the command the Makefile runs starts JupyterLab on the
repository root as the user running the tests (root in containers), and the URL it prints opens the index
notebook in a real browser.

The command is taken from ``make lab-command`` (the one definition ``make lab`` uses), run
with ``--no-browser`` on a free port; its printed URL is opened in headless Chromium.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120  # seconds; a guard against a hang on a busy machine, not a speed check
LOAD_TIMEOUT_MS = 120_000  # JupyterLab's first load is heavy on a busy machine: a hang guard
URL = re.compile(r"http://127\.0\.0\.1:\d+/\S+\?token=\w+")


def lab_command() -> list[str]:
    """``make lab``'s command, with this interpreter's environment and any free port."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "lab-command",
                          f"BIN={Path(sys.executable).parent}", "LAB_PORT=0"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [*shlex.split(out), "--no-browser"]


@pytest.fixture
def lab_url(tmp_path: Path) -> Iterator[str]:
    command = lab_command()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    # make adds --allow-root for root only (tests/test_makefile.py checks the other case).
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:  # JupyterLab logs the URL once it listens; keep draining after
        for line in process.stdout:
            if not found and (match := URL.search(line)):
                found.append(match.group(0))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        ready.wait(START_TIMEOUT)
        assert found, f"JupyterLab printed no URL (exit code {process.poll()})"
        yield found[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_printed_url_opens_the_index_notebook_on_the_repository_root(browser, lab_url):
    assert "/lab/tree/notebooks/00_index.ipynb" in lab_url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(LOAD_TIMEOUT_MS)
    expect.set_options(timeout=LOAD_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(lab_url)
        tab = page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel")
        expect(tab).to_have_text("00_index.ipynb")
        expect(page.locator(".jp-NotebookPanel:visible")).to_contain_text("start here")
        # The server's root is the repository: data/ and the package are browsable too.
        base, token = lab_url.split("/lab/", 1)[0], lab_url.rsplit("token=", 1)[1]
        root = page.request.get(f"{base}/api/contents/", headers={"Authorization":
                                                                   f"token {token}"}).json()
        assert {"data", "m11_tenant", "notebooks"} <= {item["name"] for item in root["content"]}
    finally:
        context.close()
