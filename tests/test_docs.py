"""Every public name is documented somewhere a reader will look (sqlite-utils' test_docs idea):
the README, a subpackage's README, or a notebook."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = ["m11_tenant", "m11_tenant.rag", "m11_tenant.regions", "m11_tenant.app"]


def documentation() -> str:
    files = [ROOT / "README.md", *ROOT.glob("m11_tenant/**/README.md"),
             *ROOT.glob("notebooks/*.ipynb")]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_documented(module_name):
    module = importlib.import_module(module_name)
    text = documentation()
    missing = [name for name in module.__all__ if name not in text]
    assert not missing, f"{module_name} exports undocumented names: {missing}"
