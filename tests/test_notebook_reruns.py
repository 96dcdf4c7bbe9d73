"""Every notebook, run top to bottom twice in ONE kernel, prints the same thing both times.

An instructor re-runs a notebook (or Run All again) in the kernel a class already used: a
cell that counts, shares state with an earlier section or leaves a service down must not
change what the next run prints. nbval (``make test``'s notebook stage) runs each notebook
once in a fresh kernel; this test runs it twice in the same one and compares the two runs
the way nbval compares (its sanitizers, every MIME type but images and widget ids).
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SKIPPED_MIME = ("image/", "application/vnd.jupyter.widget-view+json")
CELL_TIMEOUT = 300  # seconds; a guard against a hang, not a speed check


def sanitizers() -> list[tuple[re.Pattern[str], str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "notebooks" / "nbval_sanitize.cfg")
    return [(re.compile(config[name]["regex"]), config[name]["replace"])
            for name in config.sections()]


SANITIZERS = sanitizers()


def sanitize(text: str) -> str:
    for pattern, replacement in SANITIZERS:
        text = pattern.sub(replacement, text)
    return text


def compared(cell: nbformat.NotebookNode) -> list[str]:
    """What nbval compares of a code cell's outputs, sanitized."""
    if cell.source.lstrip().startswith("# NBVAL_IGNORE_OUTPUT"):
        return []
    seen, streams = [], {"stdout": "", "stderr": ""}
    for output in cell.outputs:
        if output.output_type == "stream":  # chunking varies between runs: join, as nbval does
            streams[output.name] += output.text
        elif output.output_type == "error":
            seen.append(f"error: {output.ename}: {output.evalue}")
        else:
            seen.extend(f"{mime}: {value}" for mime, value in sorted(output.data.items())
                        if not mime.startswith(SKIPPED_MIME))
    seen.extend(f"{name}: {text}" for name, text in streams.items() if text)
    return [sanitize(text) for text in seen]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_second_run_in_the_same_kernel_prints_the_same(path: Path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT),
                                                                   os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    runs: list[list[list[str]]] = []
    with client.setup_kernel():
        for _ in range(2):
            outputs = []
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
                    outputs.append(compared(cell))
            runs.append(outputs)
    first, second = runs
    differing = [index for index, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
    assert not differing, "\n\n".join(
        f"code cell {i}:\n--- first run\n{''.join(first[i])}\n--- second run\n{''.join(second[i])}"
        for i in differing)
