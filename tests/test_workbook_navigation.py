"""Every notebook carries previous / index / next links generated from one list, and the
index notebook's table lists every notebook of that list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
import navigation  # noqa: E402


def test_every_notebooks_links_are_up_to_date():
    result = subprocess.run([sys.executable, "notebooks/navigation.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_every_notebook_on_disk_is_in_the_chain():
    on_disk = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert on_disk <= {stem for stem, _title in navigation.CHAIN}


def test_the_index_table_lists_every_notebook_of_the_chain():
    index = nbformat.read(ROOT / "notebooks" / "00_index.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in index.cells)
    for stem, _title in navigation.CHAIN[1:]:
        assert f"]({stem}.ipynb)" in text, stem


def test_the_first_has_no_previous_and_the_last_no_next():
    assert "←" not in navigation.navigation(0)
    assert "→" not in navigation.navigation(len(navigation.CHAIN) - 1)
    assert "[Index](00_index.ipynb)" in navigation.navigation(5)
