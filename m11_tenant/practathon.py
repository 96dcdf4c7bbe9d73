"""Check cells for the practathon exercises (notebook 10), and one reference solution each.

A check never raises on a wrong answer: it returns a :class:`CheckReport` that prints one
line per requirement, ✓ or ✗, so a learner sees what is left to do. The reference
solutions are here so the checks themselves are tested (a check that no answer can pass,
or that every answer passes, would teach nothing).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from m11_tenant.errors import ConfigNotFoundError, ConfigValidationError, TenantConfigError
from m11_tenant.repository import ResolvedConfig, TenantConfigRepository
from m11_tenant.schema import TenantConfig
from m11_tenant.seed import load_example_tenants
from m11_tenant.workbook import open_sandbox

__all__ = ["CheckReport", "ReferenceVersions", "RetryBackoffConfig", "check_example_data",
           "check_field_test", "check_replication", "check_retry_field",
           "check_rollback_endpoint", "check_safe_update", "check_versioning",
           "example_configs", "quality_probe", "reference_field_test", "reference_replicate",
           "reference_rollback_app", "reference_safe_update"]


@dataclass
class CheckReport:
    """The outcome of one exercise check: each requirement with a pass/fail mark."""

    exercise: str
    results: list[tuple[str, bool]] = field(default_factory=list)

    def require(self, requirement: str, passed: bool) -> bool:
        self.results.append((requirement, bool(passed)))
        return bool(passed)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(ok for _, ok in self.results)

    def __str__(self) -> str:
        done = sum(ok for _, ok in self.results)
        head = (f"{self.exercise}: all {done} checks pass" if self.passed
                else f"{self.exercise}: {done} of {len(self.results)} checks pass")
        return "\n".join([head, *(f"  {'✓' if ok else '✗'} {text}"
                                  for text, ok in self.results)])

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        printer.text(str(self))


# --------------------------------------------------------------------------- easy


def _refused(config_cls: type[TenantConfig], data: Mapping[str, Any]) -> bool:
    try:
        config_cls.model_validate(dict(data))
    except ValidationError:
        return True
    return False


def check_retry_field(config_cls: type[TenantConfig], name: str = "retry_backoff_s") -> CheckReport:
    """Easy: a new bounded field, declared like ``max_retries``, on a ``TenantConfig`` subclass."""
    report = CheckReport(f"easy: the {name} field")
    declared = report.require(f"{config_cls.__name__} declares {name}",
                              name in config_cls.model_fields)
    try:
        default = getattr(config_cls(), name, None)
    except ValidationError:
        default = None
    report.require("the default config is valid and the default is >= 0",
                   isinstance(default, int | float) and default >= 0)
    report.require("a negative value is refused",
                   declared and _refused(config_cls, {name: -1}))
    report.require("0 is accepted", declared and not _refused(config_cls, {name: 0}))
    report.require("an absurdly large value (1,000,000) is refused",
                   declared and _refused(config_cls, {name: 1_000_000}))
    report.require('a string such as "2" is refused (strict types)',
                   declared and _refused(config_cls, {name: "2"}))
    report.require("the other fields are still validated (temperature 3.5 refused)",
                   _refused(config_cls, {"temperature": 3.5}))
    return report


class RetryBackoffConfig(TenantConfig):
    """Reference solution (easy): seconds to wait between retries, bounded like max_retries."""

    retry_backoff_s: float = Field(1.0, ge=0.0, le=60.0,
                                   description="seconds between retries (0-60)")


def example_configs() -> dict[str, dict[str, Any]]:
    """The example tenants' configs (``data/tenants.json``), tenant id → config: a copy
    the learner edits when a new field joins the schema."""
    return {t.tenant_id: copy.deepcopy(t.config) for t in load_example_tenants()}


def check_example_data(config_cls: type[TenantConfig], examples: Mapping[str, Any],
                       name: str = "retry_backoff_s") -> CheckReport:
    """Easy, step 2: the example data still validates and shows the new field in use."""
    report = CheckReport(f"easy: the example data uses {name}")
    expected = set(example_configs())
    report.require("every example tenant is still there", expected <= set(examples))
    invalid = [tid for tid, config in examples.items()
               if not isinstance(config, Mapping) or _refused(config_cls, config)]
    report.require(f"every example config validates with {config_cls.__name__}"
                   + (f" (not: {', '.join(sorted(invalid))})" if invalid else ""), not invalid)
    default = config_cls.model_fields[name].default if name in config_cls.model_fields else None
    report.require(f"at least one example sets {name} to a value other than the default",
                   any(isinstance(c, Mapping) and name in c and c[name] != default
                       for c in examples.values()))
    return report


def _mutants(name: str) -> dict[str, type[TenantConfig]]:
    """Broken declarations of the field: a good test of it fails on every one."""
    return {
        "no field at all": type("NoField", (TenantConfig,), {}),
        "no lower bound": type("NoLowerBound", (TenantConfig,), {
            "__annotations__": {name: float}, name: Field(1.0, le=60.0)}),
        "no upper bound": type("NoUpperBound", (TenantConfig,), {
            "__annotations__": {name: float}, name: Field(1.0, ge=0.0)}),
        "a negative default": type("NegativeDefault", (TenantConfig,), {
            "__annotations__": {name: float}, name: Field(-1.0, le=60.0)}),
        'lax types ("2" accepted)': type("LaxTypes", (TenantConfig,), {
            "__annotations__": {name: float}, name: Field(1.0, ge=0.0, le=60.0, strict=False)}),
    }


def check_field_test(test: Callable[[type[TenantConfig]], None],
                     name: str = "retry_backoff_s") -> CheckReport:
    """Easy, step 3: the learner's test passes on a correct field and fails on broken ones.

    A test that passes whatever the code does checks nothing, so the test is run against
    the reference declaration (it must pass) and against each mutant (it must fail).
    """
    report = CheckReport(f"easy: your test of {name}")

    def fails_on(config_cls: type[TenantConfig]) -> bool:
        try:
            test(config_cls)
        except Exception:
            return True
        return False

    report.require("it passes on a correct declaration", not fails_on(RetryBackoffConfig))
    for broken, config_cls in _mutants(name).items():
        report.require(f"it fails on {broken}", fails_on(config_cls))
    return report


def reference_field_test(config_cls: type[TenantConfig]) -> None:
    """Reference solution (easy, step 3): each bound tested on both sides, plus strictness."""
    name = "retry_backoff_s"
    assert name in config_cls.model_fields, f"{config_cls.__name__} has no {name}"
    assert 0 <= getattr(config_cls(), name) <= 60
    for ok in (0, 0.5, 60):
        assert getattr(config_cls.model_validate({name: ok}), name) == ok
    for bad in (-0.001, 60.001, "2"):
        assert _refused(config_cls, {name: bad}), f"{bad!r} was accepted"


# --------------------------------------------------------------------------- medium


class ReferenceVersions:
    """Reference solution (medium): versioned configs, the last ``keep`` kept, rollback as
    a new version. (An exercise's model of what the package's stores do in SQL.)"""

    def __init__(self, keep: int = 10):
        self.keep = keep
        self._versions: dict[str, list[tuple[int, dict[str, Any]]]] = {}

    def save(self, tenant_id: str, config: Mapping[str, Any]) -> int:
        versions = self._versions.setdefault(tenant_id, [])
        number = versions[-1][0] + 1 if versions else 1
        versions.append((number, dict(config)))
        del versions[:-self.keep]
        return number

    def history(self, tenant_id: str) -> list[tuple[int, dict[str, Any]]]:
        return [(n, dict(c)) for n, c in reversed(self._versions.get(tenant_id, []))]

    def rollback(self, tenant_id: str, version: int) -> int:
        for number, config in self._versions.get(tenant_id, []):
            if number == version:
                return self.save(tenant_id, config)
        raise ConfigNotFoundError(f"tenant {tenant_id!r} has no version {version} (the last "
                                  f"{self.keep} are kept)")


def check_versioning(versions_cls: Callable[..., Any]) -> CheckReport:
    """Medium, step 1: history of changes, the last 10 kept, rollback as a new version."""
    report = CheckReport("medium: configuration versioning")
    try:
        versions = versions_cls(keep=10)
        numbers = [versions.save("acme", {"top_k": k}) for k in range(1, 13)]
        history = versions.history("acme")
    except Exception as exc:
        report.require(f"save and history work ({type(exc).__name__}: {exc})", False)
        return report
    report.require("save returns version numbers 1, 2, 3, …", numbers == list(range(1, 13)))
    report.require("history lists the newest first, the current version included",
                   bool(history) and history[0] == (12, {"top_k": 12}))
    report.require("only the last 10 versions are kept (3 to 12 after 12 saves)",
                   [n for n, _ in history] == list(range(12, 2, -1)))
    try:
        restored = versions.rollback("acme", 5)
        after = versions.history("acme")
    except Exception:
        restored, after = None, []
    report.require("a rollback restores the old config as a new version (13 = version 5)",
                   restored == 13 and bool(after) and after[0] == (13, {"top_k": 5}))
    report.require("the history still shows the versions rolled back over",
                   [n for n, _ in after[:3]] == [13, 12, 11])
    try:
        versions.rollback("acme", 1)
        trimmed = False
    except LookupError:
        trimmed = True
    except Exception:
        trimmed = False
    report.require("rolling back to a version no longer kept raises ConfigNotFoundError",
                   trimmed)
    try:
        versions.save("other", {"top_k": 3})
        separate = [n for n, _ in versions.history("other")] == [1]
    except Exception:
        separate = False
    report.require("each tenant has its own numbering", separate)
    return report


def reference_rollback_app(versions: Any) -> Any:
    """Reference solution (medium, step 2): ``POST /config/{tenant_id}/rollback?version=N``."""
    from fastapi import FastAPI, HTTPException  # the api extra: notebooks install it

    app = FastAPI()

    @app.post("/config/{tenant_id}/rollback")
    def rollback(tenant_id: str, version: int) -> dict[str, Any]:
        try:
            new = versions.rollback(tenant_id, version)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"tenant_id": tenant_id, "version": new,
                "config": versions.history(tenant_id)[0][1]}

    return app


def check_rollback_endpoint(make_app: Callable[[Any], Any]) -> CheckReport:
    """Medium, step 2: the rollback endpoint over :class:`ReferenceVersions`."""
    from fastapi.testclient import TestClient

    report = CheckReport("medium: POST /config/{tenant_id}/rollback?version=N")
    versions = ReferenceVersions()
    for k in (3, 7, 9):
        versions.save("acme", {"top_k": k})
    client = TestClient(make_app(versions), raise_server_exceptions=False)
    ok = client.post("/config/acme/rollback?version=1")
    body = ok.json() if ok.headers.get("content-type", "").startswith("application/json") else {}
    report.require("a rollback answers 200", ok.status_code == 200)
    report.require('the answer carries the new version ({"version": 4, …})',
                   isinstance(body, dict) and body.get("version") == 4)
    report.require("the rollback is stored (history starts with version 4 = version 1)",
                   versions.history("acme")[0] == (4, {"top_k": 3}))
    report.require("an unknown version is a 404",
                   client.post("/config/acme/rollback?version=99").status_code == 404)
    report.require("a version that is not a number is a 422",
                   client.post("/config/acme/rollback?version=two").status_code == 422)
    return report


# --------------------------------------------------------------------------- medium (bonus)


def quality_probe(config: TenantConfig) -> list[str]:
    """Problems that make a *valid* config answer badly (empty list: looks fine)."""
    problems = []
    if config.top_k < 3:
        problems.append(f"top_k {config.top_k} retrieves too little context (use 3 or more)")
    if config.temperature > 1.5:
        problems.append(f"temperature {config.temperature} is too random for grounded answers")
    template = config.prompt_template
    if "{context}" in template and template.index("{context}") > template.index("{query}"):
        problems.append("the template puts the context after the question")
    return problems


SafeUpdate = Callable[..., ResolvedConfig]


def check_safe_update(safe_update: SafeUpdate) -> CheckReport:
    """Medium: ``safe_update(repo, tenant_id, updates, probe, actor=...)`` keeps good changes
    and rolls harmful ones back automatically, leaving a readable history."""
    report = CheckReport("medium: update with automatic rollback")
    box = open_sandbox()
    try:
        repo, tenant = box.repo, "startup-co"
        before = repo.get_record(tenant)
        try:
            kept = safe_update(repo, tenant, {"top_k": 6}, quality_probe, actor="practathon")
        except TenantConfigError as exc:
            report.require(f"a good update is kept (it raised {type(exc).__name__})", False)
            return report
        now = repo.get_record(tenant)
        report.require("a good update is kept as one new version",
                       (now.config.top_k, now.version) == (6, before.version + 1)
                       and kept.version == now.version)
        try:
            safe_update(repo, tenant, {"top_k": 1, "temperature": 1.9}, quality_probe,
                        actor="practathon")
        except TenantConfigError as exc:
            report.require(f"a harmful update runs, then is undone (it raised "
                           f"{type(exc).__name__})", False)
            return report
        after = repo.get_record(tenant)
        report.require("a harmful update is undone: the config is back to the good one",
                       after.config == now.config)
        history = repo.get_history(tenant)
        report.require("the undo is a rollback, recorded as a new version",
                       history[0].action == "rollback" and after.version == now.version + 2)
        reason = repo.get_audit_log(tenant, limit=1)[0].reason or ""
        report.require("the rollback's audit reason names the probe's problem",
                       "top_k" in reason or "temperature" in reason)
        refused = False
        try:
            safe_update(repo, tenant, {"top_k": 99}, quality_probe, actor="practathon")
        except ConfigValidationError:
            refused = True
        report.require("an invalid update raises ConfigValidationError and stores nothing",
                       refused and repo.get_record(tenant).version == after.version)
    finally:
        box.close()
    return report


def reference_safe_update(repo: TenantConfigRepository, tenant_id: str,
                          updates: Mapping[str, Any],
                          probe: Callable[[TenantConfig], list[str]], *,
                          actor: str = "system") -> ResolvedConfig:
    """Reference solution (medium): write, probe the stored result, roll back on problems."""
    before = repo.get_record(tenant_id)
    after = repo.update_config(tenant_id, updates, expected_version=before.version, actor=actor)
    problems = probe(after.config)
    if not problems:
        return after
    reason = "automatic rollback: " + "; ".join(problems)
    if before.version == 0:  # nothing to go back to: back to the defaults
        repo.delete_config(tenant_id, expected_version=after.version, actor=actor,
                           reason=reason)
        return repo.get_record(tenant_id)
    return repo.rollback(tenant_id, before.version, expected_version=after.version,
                         actor=actor, reason=reason)


# --------------------------------------------------------------------------- hard

Regions = Mapping[str, TenantConfigRepository]


def _lags_expected(before: Mapping[str, Mapping[str, ResolvedConfig]],
                   regions: Regions) -> dict[str, float]:
    """Each region's replication lag in the pass that turned ``before`` into the regions'
    state now: for every copy written (a version that moved), the seconds from the winning
    write in its source region to the copy; the largest per region, 0 where nothing came."""
    lags = dict.fromkeys(regions, 0.0)
    for tenant_id, records in before.items():
        written = [(rec.updated_at or "", name) for name, rec in records.items() if rec.version]
        if not written:
            continue
        source_at = datetime.fromisoformat(max(written)[0])
        for name, repo in regions.items():
            now = repo.get_record(tenant_id)
            if now.version != records[name].version and now.updated_at:
                lag = (datetime.fromisoformat(now.updated_at) - source_at).total_seconds()
                lags[name] = max(lags[name], lag)
    return lags


def check_replication(replicate: Callable[[Regions], Any]) -> CheckReport:
    """Hard: ``replicate(regions)`` makes every region hold the last-written config of every
    tenant (last write wins by ``updated_at``, ties to the region name), does nothing when
    they already agree, and returns the replication lag it observed: ``{region: seconds}``,
    per region the longest time from a winning write in its source region to the copy
    written here (the copy's ``updated_at`` minus the source's), 0 where nothing came."""
    report = CheckReport("hard: multi-region replication, last write wins")
    box = open_sandbox(seed=False)
    try:
        regions = {name: box.open_repository(database="own", redis="own")
                   for name in ("ap", "eu", "us")}

        def snapshot() -> dict[str, dict[str, ResolvedConfig]]:
            tenants = sorted(set().union(*(r.iter_tenants() for r in regions.values())))
            return {t: {name: r.get_record(t) for name, r in regions.items()}
                    for t in tenants}

        regions["us"].update_config("acme", {"top_k": 4}, actor="us-admin")
        regions["eu"].update_config("globex", {"plan": "pro", "model": "gpt-4"},
                                    actor="eu-admin")
        before = snapshot()
        first_lags = replicate(regions)
        first_expected = _lags_expected(before, regions)
        report.require("a tenant written in one region reaches every region",
                       all(r.get_config("acme").top_k == 4 for r in regions.values())
                       and all(r.get_config("globex").model == "gpt-4"
                               for r in regions.values()))
        # Concurrent writes (no sync in between): eu first, then ap a minute later.
        regions["eu"].update_config("acme", {"temperature": 0.2}, actor="eu-admin")
        regions["ap"].update_config("acme", {"top_k": 9}, actor="ap-admin")
        replicate(regions)
        configs = [r.get_config("acme") for r in regions.values()]
        report.require("after concurrent writes all regions agree",
                       all(c == configs[0] for c in configs))
        report.require("the later write (ap: top_k 9) wins everywhere",
                       all((c.top_k, c.temperature) == (9, 0.7) for c in configs))
        versions = {name: r.get_record("acme").version for name, r in regions.items()}
        quiet_lags = replicate(regions)
        agreed = all(c == configs[0] for c in configs)
        report.require("replicating again when regions agree writes nothing",
                       agreed and versions == {name: r.get_record("acme").version
                                               for name, r in regions.items()})
        report.require("replicate returns each region's lag in seconds, from the source's "
                       "write to the copy (0 where nothing came)",
                       _same_lags(first_lags, first_expected))
        report.require("a pass with nothing to copy reports no lag",
                       _same_lags(quiet_lags, dict.fromkeys(regions, 0.0)))
    finally:
        box.close()
    return report


def _same_lags(reported: Any, expected: Mapping[str, float]) -> bool:
    return (isinstance(reported, Mapping) and set(reported) == set(expected)
            and all(isinstance(reported[k], int | float) and not isinstance(reported[k], bool)
                    and abs(reported[k] - v) < 1e-6 for k, v in expected.items()))


def reference_replicate(regions: Regions) -> dict[str, float]:
    """Reference solution (hard): whole-config last-write-wins across every region; returns
    each region's replication lag (seconds from the source's write to the copy)."""
    lags = dict.fromkeys(regions, 0.0)
    tenants = sorted(set().union(*(r.iter_tenants() for r in regions.values())))
    for tenant_id in tenants:
        records = {name: repo.get_record(tenant_id) for name, repo in regions.items()}
        stored = [(rec.updated_at or "", name) for name, rec in records.items() if rec.version]
        written_at, source = max(stored)
        winner = records[source].config
        for name, repo in regions.items():
            if records[name].config != winner or records[name].version == 0:
                copied = repo.update_config(tenant_id, winner, merge=False, actor="replicator",
                                            reason=f"replicated from {source}")
                lag = (datetime.fromisoformat(copied.updated_at or written_at)
                       - datetime.fromisoformat(written_at)).total_seconds()
                lags[name] = max(lags[name], lag)
    return lags
