"""``serve``'s admin key: weak ones refused before anything starts, a strong one kept in the
``--admin-key-file`` (what ``make serve`` uses) across restarts."""

from __future__ import annotations

import os
import stat

import pytest

from m11_tenant import cli
from m11_tenant.errors import WeakAdminKeyError
from m11_tenant.web.auth import check_admin_key


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    # Empty counts as unset; serve writes the key it picks here, and the teardown removes it.
    monkeypatch.setenv("M11_ADMIN_KEY", "")
    monkeypatch.chdir(tmp_path)  # no .env but the test's own
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: pytest.fail("uvicorn must not start"))
    return tmp_path


@pytest.mark.parametrize("key", ["change-me", "password123", "m11a_tooshort"])
def test_serve_refuses_a_weak_admin_key_from_the_environment(clean_env, monkeypatch, capsys,
                                                             key):
    monkeypatch.setenv("M11_ADMIN_KEY", key)
    assert cli.main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "M11_ADMIN_KEY" in err and "secrets.token_urlsafe(32)" in err and key not in err


def test_serve_refuses_a_weak_admin_key_from_dot_env(clean_env, monkeypatch, capsys):
    monkeypatch.delenv("M11_ADMIN_KEY")
    (clean_env / ".env").write_text("M11_ADMIN_KEY=change-me\n")
    assert cli.main(["serve", "--port", "1"]) == 2
    assert "at least 32" in capsys.readouterr().err


def test_the_kept_admin_key_is_made_once_private_and_reused(clean_env, monkeypatch, capsys):
    started = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: started.append(kw))
    path = clean_env / ".m11" / "admin_key"
    assert cli.main(["serve", "--port", "1", "--admin-key-file", str(path)]) == 0
    key = path.read_text().strip()
    assert check_admin_key(key) == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    first = capsys.readouterr().err
    assert str(path) in first and key not in first  # where it is, not the key itself
    monkeypatch.setenv("M11_ADMIN_KEY", "")
    assert cli.main(["serve", "--port", "1", "--admin-key-file", str(path)]) == 0
    assert path.read_text().strip() == key and len(started) == 2
    assert os.environ["M11_ADMIN_KEY"] == key


def test_a_weak_key_in_the_kept_file_is_refused(clean_env, capsys):
    path = clean_env / "admin_key"
    path.write_text("password\n")
    assert cli.main(["serve", "--port", "1", "--admin-key-file", str(path)]) == 2
    assert "has 8 characters" in capsys.readouterr().err


def test_check_admin_key_names_the_problem():
    with pytest.raises(WeakAdminKeyError, match="is a common password"):
        check_admin_key("passwordpasswordpasswordpassword")
    with pytest.raises(WeakAdminKeyError, match="distinct characters"):
        check_admin_key("ab" * 20)


def test_several_workers_keep_the_redis_url_a_dot_env_gives(clean_env, monkeypatch, capsys):
    """``--workers 2`` turns the cache off only when no REDIS_URL is configured anywhere:
    one written in ``.env`` counts as much as one in the environment."""
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: None)
    monkeypatch.setenv("REDIS_URL", "")  # recorded as unset, so what serve sets is undone
    monkeypatch.delenv("REDIS_URL")
    (clean_env / ".env").write_text("REDIS_URL=redis://127.0.0.1:1/0\n")
    assert cli.main(["serve", "--port", "1", "--workers", "2"]) == 0
    assert "REDIS_URL" not in os.environ and "cache is off" not in capsys.readouterr().err
    (clean_env / ".env").unlink()
    assert cli.main(["serve", "--port", "1", "--workers", "2"]) == 0
    assert os.environ["REDIS_URL"] == "" and "cache is off" in capsys.readouterr().err
