"""The Makefile's first-run guards: an unsupported Python is refused, with a message, before
anything is installed; ``make lab`` adds ``--allow-root`` for root only."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_an_old_python_is_refused_with_the_version_and_what_to_do(tmp_path):
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Python 3.10.12" && exit 0\nexit 1\n')
    old.chmod(0o755)
    result = make("check-python", f"PYTHON={old}")
    assert result.returncode != 0
    assert "needs Python 3.11 or newer" in result.stdout
    assert "Python 3.10.12" in result.stdout
    assert "make PYTHON=python3.12 demo" in result.stdout


def test_a_missing_python_is_named(tmp_path):
    result = make("check-python", f"PYTHON={tmp_path / 'no-such-python'}")
    assert result.returncode != 0
    assert "not found" in result.stdout


def test_this_python_passes_the_check():
    import sys

    assert make("check-python", f"PYTHON={sys.executable}").returncode == 0


def test_lab_allows_root_only_for_root():
    as_root = make("lab-command", "USER_ID=0").stdout
    as_user = make("lab-command", "USER_ID=1000").stdout
    assert "--allow-root" in as_root
    assert "--allow-root" not in as_user
    for command in (as_root, as_user):
        assert f'--ServerApp.root_dir="{ROOT}"' in command
        assert "--LabApp.default_url=/lab/tree/notebooks/00_index.ipynb" in command
