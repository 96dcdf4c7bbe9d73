"""One :class:`Settings`, read from the environment and a ``.env`` file in the working
directory: what ``.env.example`` documents works from ``.env`` for ``serve``, the pipeline
and the notebooks alike.

Every test that writes a ``.env`` does it in its own ``tmp_path`` and ``chdir``s there
(``monkeypatch`` undoes both), so no ``.env`` can reach another test.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from m11_tenant import cli
from m11_tenant.app import create_app
from m11_tenant.catalog import load_catalog
from m11_tenant.rag import RagPipeline
from m11_tenant.settings import Settings, load_settings
from m11_tenant.workbook import open_sandbox

ADMIN_KEY = "m11a_dotenv-admin-key-0123456789-abcdefXYZ"
OPENAI_KEY = "sk-dotenv-NOT-A-REAL-KEY"


@pytest.fixture
def dot_env(monkeypatch, tmp_path):
    """A working directory of the test's own with a ``.env`` holding an admin key and a
    provider key, and none of the settings in the environment (so only ``.env`` speaks)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    # serve writes the admin key it picks to the environment; recorded as set, so the
    # teardown removes whatever it wrote.
    monkeypatch.setenv("M11_ADMIN_KEY", "")
    monkeypatch.delenv("M11_ADMIN_KEY")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"M11_ADMIN_KEY={ADMIN_KEY}\nOPENAI_API_KEY={OPENAI_KEY}\n"
                                   "M11_RATE_PREVIEWS=3/minute\n")
    return tmp_path


def test_every_documented_variable_is_a_setting():
    """``.env.example`` documents exactly the fields of ``Settings``: nothing read elsewhere."""
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / ".env.example"
    documented = {line.lstrip("# ").split("=", 1)[0] for line in example.read_text().splitlines()
                  if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()}
    assert documented == {name.upper() for name in Settings.model_fields}


def test_serve_takes_the_admin_key_from_dot_env(dot_env, monkeypatch, capsys):
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.append((app, kw)))
    assert cli.main(["serve", "--port", "1"]) == 0
    assert started and "is not set" not in capsys.readouterr().err  # no key generated
    # What each uvicorn worker then calls: the app factory, reading the same settings.
    app = create_app()
    assert app.state.ctx.settings.m11_admin_key == ADMIN_KEY
    assert app.state.ctx.preview_rate.limit == 3  # a server knob from .env as well
    with TestClient(app) as client:
        assert client.get("/tenants", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
                          ).status_code == 200
        assert client.get("/tenants", headers={"Authorization": "Bearer m11a_" + "x" * 40}
                          ).status_code == 401


def test_the_pipeline_takes_the_provider_key_from_dot_env(dot_env):
    pipeline = RagPipeline(generation="auto")  # settings: the default, environment and .env
    assert pipeline.live
    assert pipeline.providers.configured == ("openai",)
    assert pipeline.providers.settings.openai_api_key == OPENAI_KEY


def test_the_notebooks_sandbox_takes_the_provider_key_from_dot_env(dot_env):
    with (dot_env / ".env").open("a") as env:  # the sandbox keeps its own storage
        env.write("DATABASE_URL=postgresql://nobody@127.0.0.1:1/none\nREDIS_URL=redis://x:1/0\n")
    box = open_sandbox(seed=False)
    try:
        assert box.settings.openai_api_key == OPENAI_KEY
        assert box.settings.redis_url is None and box.repo.store.url.startswith("sqlite:///")
        assert not box.pipeline().live  # the notebooks' default: offline, same answers
        live = box.pipeline(generation="auto")
        assert live.live and live.providers.configured == ("openai",)
        assert box.admin_key != ADMIN_KEY  # the sandbox's API has a key of its own
    finally:
        box.close()


def test_without_dot_env_nothing_is_configured(monkeypatch, tmp_path):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.m11_admin_key is None and settings.openai_api_key is None
    assert not RagPipeline(settings=settings).live


def test_the_catalog_directory_is_a_setting(monkeypatch, tmp_path):
    """``M11_DATA_DIR`` is read when the catalog is first loaded, not at import."""
    import json

    from m11_tenant import catalog

    shipped = load_catalog(catalog.DATA_DIR)
    doc = json.loads((catalog.DATA_DIR / "plans.json").read_text())
    doc["plans"] = [p for p in doc["plans"] if p["name"] == "free"]
    (tmp_path / "plans.json").write_text(json.dumps(doc))
    (tmp_path / "models.json").write_text((catalog.DATA_DIR / "models.json").read_text())
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"M11_DATA_DIR={tmp_path}\n")
    monkeypatch.delenv("M11_DATA_DIR", raising=False)
    catalog._configured_catalog.cache_clear()
    try:
        assert list(load_catalog().plans) == ["free"]
    finally:
        (tmp_path / ".env").unlink()
        catalog._configured_catalog.cache_clear()
    assert load_catalog().plans.keys() == shipped.plans.keys()
