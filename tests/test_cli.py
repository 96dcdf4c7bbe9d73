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
