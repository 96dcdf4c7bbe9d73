"""explain(): pure, over a config, its audit lines and its kept history (no fixtures)."""

from __future__ import annotations

from m11_tenant.explain import explain
from m11_tenant.schema import load_catalog, validate_config
from m11_tenant.store import AuditEntry, HistoryEntry

FREE = load_catalog().plan("free")


def history(version: int, config: dict, by: str = "alice") -> HistoryEntry:
    return HistoryEntry("acme", version, validate_config(config).model_dump(),
                        f"2026-01-0{version}T09:00:00+00:00", by, "update")


def audit(version: int, diff: dict, actor: str = "alice", action: str = "update",
          reason: str | None = None) -> AuditEntry:
    return AuditEntry(version, f"2026-01-0{version}T09:00:00+00:00", actor, "tenant", "acme",
                      action, version, diff, reason)


def test_nothing_stored_means_every_field_is_its_default():
    result = explain("acme", validate_config({}), 0, FREE, [], [])
    assert {f["source"] for f in result["fields"].values()} == {"default"}
    assert result["fields"]["max_tokens"]["plan_limit"] == "at most 1000 on the free plan"


def test_the_newest_write_that_changed_a_field_set_it():
    config = validate_config({"top_k": 9, "temperature": 0.7})
    lines = [audit(3, {"top_k": [7, 9]}, "bob", reason="wider"),
             audit(2, {"top_k": [5, 7]}),
             audit(1, {"top_k": [None, 5], "temperature": [None, 0.7]})]
    fields = explain("acme", config, 3, FREE, lines, [])["fields"]
    assert (fields["top_k"]["set_by"], fields["top_k"]["version"], fields["top_k"]["reason"]) == (
        "bob", 3, "wider")
    # stored at its default value by the first write, never chosen since: still the default
    assert fields["temperature"]["source"] == "default"


def test_audit_lines_of_other_actions_do_not_count():
    config = validate_config({"top_k": 9})
    lines = [audit(2, {"replayed": [None, 4]}, action="replay"),
             AuditEntry(9, "t", "x", "tenant", "acme", "lock", None, {"locked": [False, True]},
                        None),
             audit(1, {"top_k": [None, 9]})]
    assert explain("acme", config, 2, FREE, lines, [])["fields"]["top_k"]["version"] == 1


def test_without_audit_lines_the_oldest_kept_version_with_the_value_is_named():
    config = validate_config({"top_k": 9, "alpha": 0.2})
    kept = [history(3, {"top_k": 9, "alpha": 0.2}, "carol"),
            history(2, {"top_k": 9, "alpha": 0.5}, "bob"),
            history(1, {"top_k": 4, "alpha": 0.5})]
    fields = explain("acme", config, 3, FREE, [], kept)["fields"]
    assert (fields["top_k"]["set_by"], fields["top_k"]["version"], fields["top_k"]["reason"]) == (
        "bob", 2, None)
    assert (fields["alpha"]["set_by"], fields["alpha"]["version"]) == ("carol", 3)
    assert fields["temperature"]["source"] == "default"


def test_who_may_change_and_the_plan_cap():
    config = validate_config({"max_tokens": 1000})
    result = explain("acme", config, 1, FREE, [audit(1, {"max_tokens": [None, 1000]})], [])
    assert result["fields"]["max_tokens"]["at_plan_cap"] is True
    assert result["fields"]["plan"]["who_may_change"] == "platform admin"
    assert result["fields"]["top_k"]["who_may_change"] == "tenant or platform admin"
    assert result["forbidden_for_tenant"] == ["plan"]
