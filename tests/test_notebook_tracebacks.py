"""The short tracebacks stored in the notebooks still point at the code a run raises from.

nbval checks that a cell tagged ``raises-exception`` raises, but does not compare the
traceback it stored, so a refactor that moves a ``raise`` leaves the notebook naming a line
that no longer raises anything. The workbook's printer (``m11_tenant.workbook``) writes two
lines a learner reads: ``your code, line N: <the cell's line>`` and ``raised in FUNC (PATH,
line N)``. This test reads every stored error output and checks both against the sources.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
YOUR_CODE = re.compile(r"^  your code, line (\d+): (.*)$")
RAISED_IN = re.compile(r"^  raised in (\w+) \((m11_tenant/[\w/]+\.py), line (\d+)\)$")


def stored_tracebacks() -> list[tuple[str, str, list[str]]]:
    """(notebook, cell source, traceback lines) for every stored error output."""
    found = []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    found.append((path.name, cell.source, output["traceback"]))
    return found


TRACEBACKS = stored_tracebacks()


def functions_around(source: str, line: int) -> set[str]:
    """Names of the functions whose body spans ``line``."""
    return {node.name for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.lineno <= line <= (node.end_lineno or node.lineno)}


def test_the_notebooks_store_short_tracebacks() -> None:
    assert any(RAISED_IN.match(line) for _, _, tb in TRACEBACKS for line in tb)


@pytest.mark.parametrize(("notebook", "cell", "traceback"), TRACEBACKS,
                         ids=[f"{name}-{n}" for n, (name, _, _) in enumerate(TRACEBACKS)])
def test_a_stored_traceback_names_the_cell_line_and_a_raise_in_the_named_function(
        notebook: str, cell: str, traceback: list[str]) -> None:
    for line in traceback:
        if match := YOUR_CODE.match(line):
            number, text = int(match[1]), match[2]
            assert cell.splitlines()[number - 1].strip() == text, (
                f"{notebook}: the cell's line {number} is not {text!r}")
        elif match := RAISED_IN.match(line):
            function, path, number = match[1], ROOT / match[2], int(match[3])
            source = path.read_text(encoding="utf-8")
            assert source.splitlines()[number - 1].lstrip().startswith("raise"), (
                f"{notebook}: {match[2]} line {number} is not a raise; re-run the cell and "
                "store what it prints")
            assert function in functions_around(source, number), (
                f"{notebook}: {match[2]} line {number} is not inside {function}()")
