"""The one API the rest of the code uses to read and change tenant configs.

Reads go near cache (validated objects in this process) -> Redis -> database -> defaults;
writes are validated, stored in one transaction, then dropped from this process's near
cache and from Redis, and announced to every other process. Faults degrade instead of
failing: Redis down means the database serves; the database down means the last known
good copy serves and writes are refused with a clear error, so an acknowledged write is
never lost and a failed write changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from m11_tenant.cache import CachePayload, ConfigCache, InvalidationListener, NearCache
from m11_tenant.errors import (
    ConfigNotFoundError,
    ConfigValidationError,
    FieldError,
    InvalidTenantIdError,
    StoreUnavailableError,
)
from m11_tenant.schema import (
    PLATFORM_OWNED_FIELDS,
    TenantConfig,
    apply_update,
    validate_config,
    validate_tenant_id,
)
from m11_tenant.stats import LoadStats
from m11_tenant.store import (
    BULK_ROLE,
    PLATFORM_ROLES,
    QUERY_LOG_MAX_AGE_DAYS,
    AuditEntry,
    BatchingLedger,
    Change,
    Clock,
    ConfigRecord,
    CostAlert,
    HistoryEntry,
    KeyStore,
    LoggedQuery,
    Store,
)

DEFAULT_CONFIG = TenantConfig()


@dataclass(frozen=True)
class ResolvedConfig:
    """A tenant's effective config, and where it came from.

    ``version`` is 0 when the tenant has nothing stored (it runs on the defaults).
    ``source`` says where it was read: ``near`` (this process's near cache), ``cache``
    (Redis), ``database``, ``last_known_good``, or ``defaults`` (nothing stored, or
    nothing reachable);
    ``degraded`` is True when a fault forced a fallback.
    """

    tenant_id: str
    config: TenantConfig
    version: int
    source: str
    degraded: bool = False
    updated_at: str | None = None
    updated_by: str | None = None


class TenantConfigRepository:
    """Get, update (merge or replace), delete, list, history, rollback and audit; and the
    doors to the rest of storage: keys, locks, the query log, usage and cost alerts.

    Nothing outside this module and :mod:`m11_tenant.store` touches ``store``: the rest of
    the code asks the repository, or takes the narrow port it hands out (:attr:`keys`,
    :attr:`ledger`).
    """

    def __init__(self, store: Store, cache: ConfigCache, *,
                 near: NearCache | None = None, listener: InvalidationListener | None = None):
        """``near`` without a ``listener`` is only safe when this is the only process."""
        self.store, self.cache, self.near, self.listener = store, cache, near, listener
        self.stats = LoadStats()
        # Tenants whose cache entry could not be dropped (Redis was down at write time),
        # with the version written: their cached copy may be stale, so reads bypass it
        # until the delete (and its announcement) succeeds.
        self._stale_in_cache: dict[str, int] = {}
        self._origin = near.id if near is not None else ""
        if listener is not None:
            listener.on_subscribed = self._retry_invalidations

    # ---- reads --------------------------------------------------------------------------
    def get_config(self, tenant_id: str) -> TenantConfig:
        """The tenant's effective config (the defaults when nothing is stored)."""
        return self.get_record(tenant_id).config

    def get_near(self, tenant_id: str) -> ResolvedConfig | None:
        """The effective config if this process's near cache holds it, else None. Never
        waits on Redis or the database (an async handler may call it on its event loop)."""
        near = self.near
        if near is None:
            return None
        stats = self.stats
        if not stats.due():
            hit = near.get(tenant_id)  # only valid ids ever get in, so a hit needs no check
            if hit is not None:
                stats.count_load(tenant_id, "near")
            return hit
        started = time.perf_counter()
        hit = near.get(tenant_id)
        if hit is not None:
            stats.record_load(tenant_id, "near", (time.perf_counter() - started) * 1e6)
        return hit

    def get_record(self, tenant_id: str) -> ResolvedConfig:
        """The effective config with its version, source and degraded flag."""
        hit = self.get_near(tenant_id)
        if hit is not None:
            return hit
        started = time.perf_counter()
        near = self.near
        validate_tenant_id(tenant_id)
        if self._stale_in_cache and not self.cache.paused:
            self._retry_invalidations()
        token = near.token() if near is not None else 0
        payload = None if tenant_id in self._stale_in_cache else self.cache.get(tenant_id)
        if payload is not None and near is not None \
                and payload["version"] < near.newest_version(tenant_id):
            payload = None  # a slow reader put an older copy back into Redis: re-read
        origin, degraded = "cache", False
        if payload is None:
            try:
                record = self.store.get(tenant_id)
            except StoreUnavailableError:
                payload, degraded = self.cache.get_last_known_good(tenant_id), True
                origin = "last_known_good"
            else:
                origin, payload = "database", _payload(record)
                # A write announced while we read may be newer than what we read: then
                # leave Redis to the writer rather than put an older copy back.
                if tenant_id not in self._stale_in_cache and (
                        near is None or near.unchanged_since(tenant_id, token)):
                    self.cache.put(tenant_id, payload)
        resolved = self._resolve(tenant_id, payload, origin, degraded)
        if near is not None and not degraded:
            near.put(tenant_id, replace(resolved, source="near"), resolved.version, token)
        self.stats.record_load(tenant_id, origin, (time.perf_counter() - started) * 1e6)
        return resolved

    def warm_start(self, timeout: float = 10.0) -> int:
        """Load every stored tenant into the near cache (up to its size); return how many.

        Waits up to ``timeout`` seconds for the invalidation subscription first: a value
        loaded before it is confirmed would be dropped anyway.
        """
        near = self.near
        if near is None:
            return 0
        if self.listener is not None:
            self.listener.ready.wait(timeout)
        token = near.token()
        loaded = 0
        for record in self.store.get_many()[:near.max_entries]:
            try:
                resolved = self._resolve(record.tenant_id, _payload(record), "near", False)
            except ConfigValidationError:
                continue  # reported when that tenant is read, as without a warm start
            loaded += near.put(record.tenant_id, resolved, record.version, token)
        return loaded

    def _resolve(self, tenant_id: str, payload: CachePayload | None, source: str,
                 degraded: bool) -> ResolvedConfig:
        if payload is None or payload["config"] is None:
            return ResolvedConfig(tenant_id, DEFAULT_CONFIG, 0, "defaults", degraded)
        try:
            config = validate_config(payload["config"], stored=True)
        except ConfigValidationError as exc:
            raise ConfigValidationError(
                exc.errors,
                f"the stored config of tenant {tenant_id!r} (version {payload['version']}) no "
                "longer validates (the catalog or plans changed?); fix it with "
                "update_config(..., merge=False) or rollback() to a valid version",
            ) from None
        return ResolvedConfig(tenant_id, config, payload["version"], source, degraded,
                              payload.get("updated_at"), payload.get("updated_by"))

    def list_tenants(self, limit: int = 100, offset: int = 0) -> list[str]:
        """Tenants with a stored config, sorted, one page at a time."""
        return self.store.list_tenants(limit=limit, offset=offset)

    def iter_tenants(self, page_size: int = 1000) -> Iterator[str]:
        """Every tenant with a stored config, sorted, read ``page_size`` at a time (no cap:
        use this, not one big ``list_tenants`` page, for "all tenants")."""
        offset = 0
        while page := self.store.list_tenants(limit=page_size, offset=offset):
            yield from page
            offset += len(page)

    def count_tenants(self) -> int:
        return self.store.count_tenants()

    def get_many(self, tenant_ids: Sequence[str] | None = None,
                 chunk: int = 500) -> list[ConfigRecord]:
        """The stored records (not validated, no cache) of ``tenant_ids`` that have one, or
        of every tenant; sorted by tenant id, read ``chunk`` ids per query."""
        if tenant_ids is None:
            return self.store.get_many(None)
        ids = list(tenant_ids)
        records = [r for start in range(0, len(ids), chunk)
                   for r in self.store.get_many(ids[start:start + chunk])]
        return sorted(records, key=lambda r: r.tenant_id)

    def get_stored(self, tenant_id: str) -> ConfigRecord | None:
        """The tenant's stored record straight from the database (no cache, not validated);
        None when it runs on the defaults."""
        return self.store.get(tenant_id)

    def get_history(self, tenant_id: str) -> list[HistoryEntry]:
        """Stored versions, newest first (the current one included; last N kept)."""
        return self.store.history(validate_tenant_id(tenant_id))

    def get_audit_log(self, tenant_id: str | None = None, limit: int = 100,
                      offset: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first, optionally for one tenant."""
        if tenant_id is not None:
            validate_tenant_id(tenant_id)
        return self.store.audit(tenant_id=tenant_id, limit=limit, offset=offset)

    def query_log(self, tenant_id: str, *, limit: int,
                  max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> list[LoggedQuery]:
        """The tenant's logged questions, newest first (see :mod:`m11_tenant.rag.querylog`)."""
        return self.store.query_log(tenant_id, limit=limit, max_age_days=max_age_days)

    def cost_alerts(self, tenant_id: str | None = None, month: str | None = None,
                    limit: int = 100) -> list[CostAlert]:
        """Recorded cost alerts, newest first; optionally one tenant's and/or one month's."""
        return self.store.cost_alerts(tenant_id, month, limit)

    def is_locked(self, tenant_id: str) -> bool:
        """Whether the tenant locked its config against platform bulk changes."""
        return self.store.is_locked(tenant_id)

    def with_near_cache(self, near: NearCache) -> TenantConfigRepository:
        """Another repository on the same store and cache, with ``near`` as its near cache
        and no listener: a process that hears of no other's writes (failure mode 3)."""
        return TenantConfigRepository(self.store, self.cache, near=near)

    # ---- the ports other parts are built on -----------------------------------------------
    @property
    def keys(self) -> KeyStore:
        """API keys and console sessions (the authenticator's and the console's store)."""
        return self.store

    @property
    def ledger(self) -> BatchingLedger:
        """The usage ledger the RAG pipeline reserves and settles queries in."""
        return self.store

    @property
    def url(self) -> str:
        """The database URL, for messages ("seeded into …")."""
        return self.store.url

    @property
    def clock(self) -> Clock:
        """The clock stored times come from."""
        return self.store.clock

    def now(self) -> str:
        """The store's current time, as stored times are written."""
        return self.store.now()

    # ---- writes -------------------------------------------------------------------------
    def update_config(self, tenant_id: str, updates: Mapping[str, Any] | TenantConfig,
                      merge: bool = True, *, expected_version: int | None = None,
                      actor: str = "system", role: str = "admin",
                      reason: str | None = None) -> ResolvedConfig:
        """Validate and store a change; ``merge=False`` resets unspecified fields to defaults.

        Raises:
            ConfigValidationError: the change is invalid; nothing was stored.
            VersionConflictError: ``expected_version`` is stale; nothing was stored.
            StoreUnavailableError: the database is down; nothing was stored.
        """
        validate_tenant_id(tenant_id)
        platform = role in PLATFORM_ROLES
        if not merge and platform:  # a replacement can be checked before the write lock
            self._validated(tenant_id, lambda: apply_update(DEFAULT_CONFIG, updates, merge=False))
        action = "update" if merge else "replace"

        def build(current: ConfigRecord | None) -> dict[str, Any]:
            # Inside the write transaction: the platform-owned fields are compared with the
            # stored ones, so no concurrent plan change slips between check and write.
            base = _stored_config(current)
            return self._validated(tenant_id, lambda: apply_update(
                base, updates, merge=merge, platform=platform, tenant_id=tenant_id)
            ).model_dump()

        change = Change(actor, role, action, reason, expected_version)
        return _written(self._commit(tenant_id, lambda: self.store.write(tenant_id, build, change)))

    def update_many(self, tenant_ids: Sequence[str], updates: Mapping[str, Any],
                    merge: bool = True, *, actor: str = "system", role: str = BULK_ROLE,
                    reason: str | None = None
                    ) -> tuple[list[ResolvedConfig], list[str], set[str]]:
        """Apply one change to many tenants, all or nothing (a platform bulk change).

        Every tenant id is checked before anything is read, and the change is validated
        against each tenant's current config inside one store transaction: one bad id or
        one tenant the change is invalid for, and nothing is stored. With the bulk role a
        tenant that locked its config is skipped -- except for the platform-owned fields
        (``plan``): a lock shields the tenant's own settings, not the platform's, so those
        still apply to it, and the audit line says why only they did. Returns the written
        configs, the skipped tenant ids, and the locked tenants that got only the
        platform-owned fields.

        Raises:
            ConfigValidationError: naming the tenant (``tenants[i]`` for an id, the config
                field with the tenant in its message for a change); nothing was stored.
        """
        errors = []
        for index, tenant_id in enumerate(tenant_ids):
            try:
                validate_tenant_id(tenant_id)
            except InvalidTenantIdError as exc:
                errors.append(FieldError(f"tenants[{index}]", exc.errors[0].message,
                                         "tenant_id"))
        if errors:
            raise ConfigValidationError(errors)
        if not merge:
            self._validated("", lambda: apply_update(DEFAULT_CONFIG, updates, merge=False))

        owned = {k: v for k, v in updates.items() if k in PLATFORM_OWNED_FIELDS}
        owned_only: set[str] = set()

        def build_for(tenant_id: str, change_set: Mapping[str, Any], mode: bool,
                      only: bool = False) -> Callable[[ConfigRecord | None], dict[str, Any]]:
            def build(current: ConfigRecord | None) -> dict[str, Any]:
                if only:
                    owned_only.add(tenant_id)
                base = DEFAULT_CONFIG if current is None else validate_config(
                    current.config, stored=True)
                try:
                    return self._validated(
                        tenant_id, lambda: apply_update(base, change_set, merge=mode)
                    ).model_dump()
                except ConfigValidationError as exc:
                    raise ConfigValidationError(
                        [FieldError(f"config.{e.field}", f"tenant {tenant_id!r}: {e.message}",
                                    e.type) for e in exc.errors],
                        f"the change is invalid for tenant {tenant_id!r}; nothing was stored",
                    ) from None
            return build

        change = Change(actor, role, "update" if merge else "replace", reason)
        targets = list(dict.fromkeys(tenant_ids))
        builds = {tenant_id: build_for(tenant_id, updates, merge) for tenant_id in targets}
        when_locked = None
        if owned and role == BULK_ROLE:
            locked_change = Change(actor, role, "update", (
                f"{reason or 'bulk change'} [tenant locked: only the platform-owned "
                f"{', '.join(owned)} applied; a lock does not cover it]"))
            when_locked = (locked_change, {tenant_id: build_for(tenant_id, owned, True, True)
                                           for tenant_id in targets})
        try:
            written, skipped = self.store.write_many(builds, change, when_locked)
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(
                f"the database is unavailable, so the bulk change was NOT saved for any "
                f"tenant; retry when it is back ({exc})") from exc
        for record in written:
            self._invalidate(record.tenant_id, record.version)
        return [_written(record) for record in written], skipped, owned_only

    def propose(self, tenant_id: str, updates: Mapping[str, Any] | TenantConfig,
                merge: bool = True, *, role: str = "admin"
                ) -> tuple[ResolvedConfig, TenantConfig]:
        """The current config and the one ``updates`` would make, checked exactly as
        :meth:`update_config` checks it (platform-owned fields included); nothing is stored.

        Raises:
            ConfigValidationError, PlatformOwnedFieldError: as ``update_config`` would.
        """
        current = self.get_record(tenant_id)
        return current, apply_update(current.config, updates, merge=merge,
                                     platform=role in PLATFORM_ROLES, tenant_id=tenant_id)

    def rollback(self, tenant_id: str, version: int, *, expected_version: int | None = None,
                 actor: str = "system", role: str = "admin",
                 reason: str | None = None) -> ResolvedConfig:
        """Restore a kept version as a new version (history is never rewritten).

        A tenant's rollback (a role outside ``PLATFORM_ROLES``) restores every field but
        the platform-owned ones, which keep their current values: a tenant cannot bring
        back a plan the platform has since changed.

        Raises:
            ConfigNotFoundError: that version is not (or no longer) kept.
            ConfigValidationError: the version does not fit the current plan (tenant).
        """
        kept = {entry.version: entry for entry in self.get_history(tenant_id)}
        if version not in kept:
            raise ConfigNotFoundError(
                f"tenant {tenant_id!r} has no kept version {version}; kept versions: "
                f"{sorted(kept) or 'none'}"
            )
        target = self._validated(tenant_id, lambda: validate_config(kept[version].config))
        platform = role in PLATFORM_ROLES
        restored = target.model_dump()
        if not platform:
            restored = {k: v for k, v in restored.items() if k not in PLATFORM_OWNED_FIELDS}

        def build(current: ConfigRecord | None) -> dict[str, Any]:
            return self._validated(tenant_id, lambda: apply_update(
                _stored_config(current), restored, merge=False, platform=platform,
                tenant_id=tenant_id)).model_dump()

        change = Change(actor, role, "rollback",
                        reason or f"rollback to version {version}", expected_version)
        return _written(self._commit(tenant_id, lambda: self.store.write(tenant_id, build,
                                                                         change)))

    def delete_config(self, tenant_id: str, *, expected_version: int | None = None,
                      actor: str = "system", role: str = "admin",
                      reason: str | None = None) -> None:
        """Drop the stored config so the tenant runs on the defaults again.

        Raises:
            ConfigNotFoundError: nothing is stored for the tenant.
        """
        validate_tenant_id(tenant_id)
        change = Change(actor, role, "delete", reason, expected_version)
        self._commit(tenant_id, lambda: self.store.delete(tenant_id, change), deleting=True)

    def write_unvalidated(self, tenant_id: str, config: Mapping[str, Any], *,
                          actor: str = "system", reason: str | None = None) -> ConfigRecord:
        """Store ``config`` as it is, with no validation: for drills and benchmarks that
        plant a config the current rules refuse (a retired model) or fill a database fast.
        Versioned, audited and invalidated like any write."""
        validate_tenant_id(tenant_id)
        stored = dict(config)
        change = Change(actor, "admin", "update", reason)
        return self._commit(tenant_id, lambda: self.store.write(tenant_id, lambda _c: stored,
                                                                change))

    def set_locked(self, tenant_id: str, locked: bool, change: Change) -> bool:
        """Lock or unlock the tenant against bulk changes (audited); False when it already
        was in that state."""
        return self.store.set_locked(tenant_id, locked, change)

    def record_audit(self, tenant_id: str, change: Change, diff: dict[str, Any] | None = None,
                     version: int | None = None) -> None:
        """Append an audit line that goes with no config write (a replay, an import plan)."""
        self.store.record_audit(tenant_id, change, diff, version)

    def record_refusal(self, tenant_id: str, change: Change, window_seconds: int) -> None:
        """Count a refused attempt in one audit row per window (see the store)."""
        self.store.record_refusal(tenant_id, change, window_seconds)

    def append_query_log(self, entry: LoggedQuery, *, keep: int,
                         max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> None:
        """Log one (redacted) question, keeping the tenant's ``keep`` newest."""
        self.store.append_query_log(entry, keep=keep, max_age_days=max_age_days)

    def clear_query_log(self, tenant_id: str, change: Change) -> int:
        """Delete the tenant's whole query log (audited); how many questions went."""
        return self.store.clear_query_log(tenant_id, change)

    def _commit(self, tenant_id: str, write: Callable[[], ConfigRecord],
                deleting: bool = False) -> ConfigRecord:
        """Run a store write, then drop and announce the cached copies (or remember them)."""
        try:
            record = write()
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(
                f"the database is unavailable, so the change to tenant {tenant_id!r} was NOT "
                f"saved; retry when it is back ({exc})"
            ) from exc
        self._invalidate(tenant_id, 0 if deleting else record.version)
        return record

    def _invalidate(self, tenant_id: str, version: int) -> None:
        """Drop and announce the cached copies of a committed write (or remember them)."""
        if self.near is not None:
            self.near.invalidate(tenant_id, version)  # read-your-writes in this process
        if not self.cache.invalidate(tenant_id, version, self._origin):
            self._stale_in_cache[tenant_id] = version

    def _validated(self, tenant_id: str, check: Any) -> TenantConfig:
        try:
            return check()
        except ConfigValidationError:
            self.stats.record_validation_error(tenant_id)
            raise

    def _retry_invalidations(self) -> None:
        # Also run by the listener thread: compare before dropping, in case a newer write
        # of the same tenant failed to invalidate meanwhile.
        for tenant_id, version in list(self._stale_in_cache.items()):
            if self.cache.invalidate(tenant_id, version, self._origin) \
                    and self._stale_in_cache.get(tenant_id) == version:
                self._stale_in_cache.pop(tenant_id, None)

    # ---- operations ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``{"status": "ok" | "degraded", "services": {...}}`` for ``/health``."""
        try:
            self.store.ping()
            database = "ok"
        except StoreUnavailableError as exc:
            database = f"down: {exc}"
        if not self.cache.enabled:
            cache = "disabled"
        else:
            cache = "ok" if self.cache.ping() else f"down: {self.cache.last_error}"
        subscription = "disabled" if self.listener is None else self.listener.status
        degraded = (database != "ok" or cache.startswith("down")
                    or subscription not in {"ok", "disabled"})
        return {"status": "degraded" if degraded else "ok",
                "services": {"database": database, "cache": cache,
                             "subscription": subscription}}

    def get_stats(self, tenant_id: str | None = None) -> dict[str, Any]:
        """Load latency percentiles, cache hit rate and validation errors."""
        snapshot = self.stats.snapshot(tenant_id)
        if tenant_id is None:
            snapshot["cache"] = {"hits": self.cache.hits, "misses": self.cache.misses,
                                 "errors": self.cache.errors, "enabled": self.cache.enabled}
            # `is not None`: an empty near cache (e.g. emptied by an outage) is falsy.
            snapshot["near_cache"] = (self.near.stats() if self.near is not None
                                      else NearCache.absent_stats())
            sources = snapshot["sources"]
            total = sum(sources.values())
            snapshot["database_read_share"] = round(
                sources.get("database", 0) / total, 6) if total else 0.0
        return snapshot

    def disconnect(self) -> None:
        """Drop the database connection until :meth:`reconnect` (an outage drill): reads
        fall back to the last known good copy, writes are refused, nothing stored is lost."""
        self.store.disconnect()

    def reconnect(self) -> None:
        """End :meth:`disconnect` (a no-op while connected)."""
        self.store.reconnect()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self.store.close()


def _stored_config(record: ConfigRecord | None) -> TenantConfig:
    return DEFAULT_CONFIG if record is None else validate_config(record.config, stored=True)


def _written(record: ConfigRecord) -> ResolvedConfig:
    return ResolvedConfig(record.tenant_id, validate_config(record.config, stored=True),
                          record.version,
                          "database", False, record.updated_at, record.updated_by)


def _payload(record: ConfigRecord | None) -> CachePayload:
    if record is None:
        return {"version": 0, "config": None}
    return {"version": record.version, "config": record.config,
            "updated_at": record.updated_at, "updated_by": record.updated_by}
