"""The command line: the quickstart's first command must keep working."""

from __future__ import annotations

import subprocess
import sys

import pytest

from m11_tenant.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "seed"):
        assert command in out


def test_demo_tours_the_repository(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = subprocess.run([sys.executable, "-m", "m11_tenant", "demo", "--database-url", url],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Seeded 6 example tenants" in out
    assert "nothing was stored" in out and "startup-co is still at version 1" in out
    assert "rollback to v2" in out and "history: v4:rollback, v3:replace, v2:update, v1:replace" in out
    # Step 5: the four course tenants answer through four differently configured pipelines.
    answers = out.split("5. The same question")[1]
    for tenant, model in [("startup-co", "gpt-3.5-turbo"), ("enterprise-corp", "gpt-4"),
                          ("research-lab", "claude-3-sonnet"), ("budget-saas", "claude-3-haiku")]:
        assert f"{tenant:<16} {model}" in answers
    source_lists = [line.split("sources ")[1] for line in answers.splitlines() if "sources [" in line]
    assert len(set(source_lists)) == 4


def test_check_reports_every_tenant_and_fails_on_a_broken_one(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'check.db'}"
    assert main(["seed", "--database-url", url]) == 0
    assert main(["check", "--database-url", url]) == 0
    assert "checked 6 tenant(s)" in capsys.readouterr().out
    from m11_tenant import open_repository
    from m11_tenant.store import Change

    # A config written before a plan change: it no longer fits the catalog's rules.
    open_repository(url, "").store.write("broken-one", lambda _c: {"model": "retired-model"},
                                         Change())
    assert main(["check", "--database-url", url]) == 1
    out = capsys.readouterr().out
    assert "FAIL broken-one" in out and "retired-model" in out


def test_seed_is_idempotent(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    assert main(["seed", "--database-url", url]) == 0
    assert "seeded 6 tenant(s)" in capsys.readouterr().out
    assert main(["seed", "--database-url", url]) == 0
    assert "seeded 0 tenant(s)" in capsys.readouterr().out


def test_an_invalid_example_tenant_is_refused_and_nothing_is_stored(tmp_path):
    bad = tmp_path / "tenants.json"
    bad.write_text('{"tenants": [{"tenant_id": "ok-id", "description": "", "config": {"top_k": 99}}]}')
    from m11_tenant import ConfigValidationError, open_repository
    from m11_tenant.seed import seed_tenants

    repo = open_repository(f"sqlite:///{tmp_path / 'x.db'}", "")
    with pytest.raises(ConfigValidationError, match="top_k"):
        seed_tenants(repo, path=bad)
    assert repo.count_tenants() == 0
