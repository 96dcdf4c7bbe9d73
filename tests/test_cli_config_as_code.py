"""``serve``, ``export`` and ``import``: config as code next to the database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from m11_tenant import open_repository
from m11_tenant.cli import main
from m11_tenant.config_as_code import (
    FORMAT,
    apply_import,
    load_document,
    plan_import,
)
from m11_tenant.errors import ConfigValidationError, VersionConflictError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cac.db'}"


@pytest.fixture
def seeded(url) -> str:
    assert main(["seed", "--database-url", url]) == 0
    return url


def write_doc(path: Path, tenants: dict, fmt: str = "json") -> Path:
    doc = {"format": FORMAT, "tenants": tenants}
    path.write_text(json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc))
    return path


def test_help_lists_the_new_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "seed", "serve", "export", "import"):
        assert command in out


def test_export_writes_every_stored_config_as_json(seeded, capsys):
    capsys.readouterr()
    assert main(["export", "--database-url", seeded]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == FORMAT
    assert len(doc["tenants"]) == 6
    assert doc["tenants"]["startup-co"] == open_repository(seeded).get_config(
        "startup-co").model_dump()


@pytest.mark.parametrize("name", ["tenants.yaml", "tenants.yml", "tenants.json"])
def test_export_then_import_round_trips_and_writes_nothing(seeded, tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["export", "--database-url", seeded, "-o", str(out)]) == 0
    if name.endswith(("yml", "yaml")):
        assert "prompt_template: |" in out.read_text()
    repo = open_repository(seeded)
    audit_before = repo.get_audit_log(limit=1000)
    capsys.readouterr()
    assert main(["import", str(out), "--database-url", seeded]) == 0
    assert "imported: 0 tenant(s) written, 6 unchanged" in capsys.readouterr().out
    assert repo.get_audit_log(limit=1000) == audit_before


def test_dry_run_prints_the_diff_per_tenant_and_writes_nothing(seeded, tmp_path, capsys):
    repo = open_repository(seeded)
    current = repo.get_config("startup-co").model_dump()
    path = write_doc(tmp_path / "t.json", {
        "startup-co": current | {"temperature": 0.25},
        "new-tenant": {"plan": "pro", "model": "gpt-4"}})
    capsys.readouterr()
    assert main(["import", str(path), "--database-url", seeded, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "~ startup-co: update v1\n    temperature: 0.7 -> 0.25" in out
    assert "~ new-tenant: create" in out and '    model: "gpt-4"' in out
    assert "dry run: 2 of 2 tenant(s) would change; nothing written" in out
    assert repo.get_record("startup-co").version == 1
    assert repo.store.get("new-tenant") is None


def test_import_applies_with_actor_and_reason(seeded, tmp_path, capsys):
    path = write_doc(tmp_path / "t.yaml", {"new-tenant": {"plan": "pro", "model": "gpt-4"}},
                     fmt="yaml")
    assert main(["import", str(path), "--database-url", seeded, "--reason", "PR #12"]) == 0
    repo = open_repository(seeded)
    assert repo.get_config("new-tenant").model == "gpt-4"
    entry = repo.get_audit_log("new-tenant")[0]
    assert (entry.actor, entry.reason, entry.action) == ("import", "PR #12", "replace")


def test_an_invalid_file_lists_every_problem_and_writes_nothing(seeded, tmp_path, capsys):
    repo = open_repository(seeded)
    before = repo.get_audit_log(limit=1000)
    path = write_doc(tmp_path / "t.json", {
        "good-tenant": {"top_k": 3},
        "startup-co": {"temperature": "0.7"},
        "Bad-Id": {"top_k": 3},
        "typo-tenant": {"temprature": 0.5}})
    capsys.readouterr()
    assert main(["import", str(path), "--database-url", seeded]) == 1
    err = capsys.readouterr().err
    assert "3 problem(s) in the file; nothing was imported" in err
    assert "tenants.startup-co.temperature" in err
    assert "tenants.Bad-Id.tenant_id" in err
    assert "tenants.typo-tenant.temprature: unknown field" in err
    assert repo.get_audit_log(limit=1000) == before
    assert repo.store.get("good-tenant") is None


@pytest.mark.parametrize("text, fmt, field", [
    ('{"format": "m11_tenant/v1", "tenants": {}, "tenants": {}}', "json", "body"),
    ("format: m11_tenant/v1\ntenants:\n  a-tenant: {top_k: 3}\n  a-tenant: {top_k: 4}\n",
     "yaml", "file"),
    ("format: m11_tenant/v1\ntenants: [1, 2]\n", "yaml", "tenants"),
    ("format: other\ntenants: {}\n", "yaml", "format"),
    ("format: m11_tenant/v1\ntenants: {}\nextra: 1\n", "yaml", "extra"),
    ("- just\n- a list\n", "yaml", "file"),
    ("format: [unclosed\n", "yaml", "file"),
])
def test_malformed_files_are_refused(text, fmt, field):
    with pytest.raises(ConfigValidationError) as caught:
        load_document(text, fmt)
    assert field in [e.field for e in caught.value.errors]


def test_yaml_nan_is_refused_by_validation(seeded):
    doc = load_document("format: m11_tenant/v1\ntenants:\n  nan-tenant: {temperature: .nan}\n",
                        "yaml")
    with pytest.raises(ConfigValidationError, match=r"tenants\.nan-tenant\.temperature"):
        plan_import(open_repository(seeded), doc)


@pytest.mark.parametrize("reason", ["x" * 501, "two\nlines", "bell\x07"])
def test_a_reason_the_api_would_refuse_is_refused_and_nothing_is_written(
        seeded, tmp_path, capsys, reason):
    path = write_doc(tmp_path / "t.json", {"new-tenant": {"plan": "pro"}})
    assert main(["import", str(path), "--database-url", seeded, "--reason", reason]) == 1
    err = capsys.readouterr().err
    assert "reason" in err and err.startswith("error: ")
    repo = open_repository(seeded)
    assert repo.get_stored("new-tenant") is None
    with pytest.raises(ConfigValidationError) as raised:  # the library call, too
        apply_import(repo, plan_import(repo, load_document(path.read_text(), "json")),
                     reason=reason)
    assert raised.value.errors[0].field == "reason"
    assert repo.get_stored("new-tenant") is None


def test_a_reason_of_500_characters_is_recorded(seeded, tmp_path):
    path = write_doc(tmp_path / "t.json", {"new-tenant": {"plan": "pro"}})
    assert main(["import", str(path), "--database-url", seeded, "--reason", "r" * 500]) == 0
    assert open_repository(seeded).get_audit_log("new-tenant")[0].reason == "r" * 500


def test_a_failed_write_reverts_the_import_all_or_nothing(seeded):
    repo = open_repository(seeded)
    before = repo.get_config("budget-saas").model_dump()
    doc = {"format": FORMAT, "tenants": {
        "budget-saas": before | {"top_k": 9},
        "brand-new": {"top_k": 4},
        "startup-co": repo.get_config("startup-co").model_dump() | {"top_k": 7}}}
    plan = plan_import(repo, doc)
    repo.update_config("startup-co", {"top_k": 2}, actor="someone-else")  # after the plan
    with pytest.raises(VersionConflictError):
        apply_import(repo, plan)
    assert repo.get_config("budget-saas").model_dump() == before
    assert repo.store.get("brand-new") is None
    assert repo.get_config("startup-co").top_k == 2  # the other change is kept
    reverts = [e for e in repo.get_audit_log(limit=50) if e.reason and e.reason.startswith(
        "revert")]
    assert {e.tenant_id for e in reverts} == {"budget-saas", "brand-new"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_uvicorn_and_prints_a_generated_admin_key(seeded, tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("M11_ADMIN_KEY", "REDIS_URL")}
    env["PYTHONPATH"] = str(ROOT)
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "m11_tenant", "serve", "--port", str(port),
             "--database-url", seeded, "--no-access-log"],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"serve did not come up: {log.read_text()}")
        lines = [ln for ln in log.read_text().splitlines() if "M11_ADMIN_KEY" in ln]
        assert len(lines) == 1
        key = lines[0].rsplit(" ", 1)[1]
        got = httpx.get(f"{base}/config/startup-co", headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200 and got.headers["etag"] == '"1"'
        assert httpx.get(f"{base}/config/startup-co").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
