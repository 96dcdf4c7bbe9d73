"""Config as code: every tenant's config in one JSON or YAML file, reviewed in git.

The original module lists "Config-as-Code (YAML/Git)" as the alternative to a database;
here the two meet. ``export`` writes what the database holds; ``import`` validates the
whole file first (every tenant id, every field) and then applies it all-or-nothing,
each write carrying the version the plan was made against. The file format::

    format: m11_tenant/v1
    tenants:
      acme-co: {plan: pro, model: gpt-4, temperature: 0.3, ...}

Each config in the file is a full replacement (``merge=False``): what the file says is
what the tenant gets, missing fields take their defaults. Tenants not in the file are left
alone; tenants whose stored config already equals the file's are not rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from m11_tenant.errors import (
    ConfigValidationError,
    FieldError,
    TenantConfigError,
)
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.schema import (
    MAX_JSON_DEPTH,
    config_diff,
    parse_json_object,
    validate_config,
    validate_tenant_id,
)
from m11_tenant.text import check_reason

FORMAT = "m11_tenant/v1"
MAX_FILE_BYTES = 16 * 1024 * 1024
FORMATS = ("json", "yaml")


def export_document(repo: TenantConfigRepository) -> dict[str, Any]:
    """Every stored config, by tenant id (sorted), in the file format above."""
    return {"format": FORMAT,
            "tenants": {r.tenant_id: r.config for r in repo.get_many()}}


def dump_document(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.dump(doc, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True,
                         width=100)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def format_of(path: str) -> str:
    """``json`` or ``yaml`` from a file name (``.yml``/``.yaml`` are YAML, the rest JSON)."""
    return "yaml" if path.lower().endswith((".yml", ".yaml")) else "json"


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (prompt templates) as ``|`` blocks, so a diff in git reads well."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text and not text.endswith(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ReadableDumper.add_representer(str, _str)


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ConfigValidationError(FieldError(
                "file", f"duplicate key {key!r} at line {key_node.start_mark.line + 1}",
                "json_invalid"), "config file refused")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_document(text: str, fmt: str) -> dict[str, Any]:
    """Parse a config file strictly (duplicate keys, NaN, non-objects refused).

    Raises:
        ConfigValidationError: on the field ``file`` (syntax) or ``format``/``tenants``.
    """
    if fmt == "json":
        doc: Any = parse_json_object(text, max_bytes=MAX_FILE_BYTES,
                                     max_depth=MAX_JSON_DEPTH + 2)
    else:
        try:
            doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
        except yaml.YAMLError as exc:
            raise ConfigValidationError(FieldError("file", f"malformed YAML: {exc}",
                                                   "json_invalid"), "config file refused") from None
    if not isinstance(doc, dict):
        raise ConfigValidationError(FieldError("file", "expected a mapping at the top",
                                               "object_type"), "config file refused")
    errors = []
    if doc.get("format") != FORMAT:
        errors.append(FieldError("format", f"must be {FORMAT!r}", "value_error"))
    if not isinstance(doc.get("tenants"), dict):
        errors.append(FieldError("tenants", "must be a mapping of tenant id to config",
                                 "object_type"))
    unknown = sorted(set(doc) - {"format", "tenants"})
    errors += [FieldError(str(k), "unknown top-level key; allowed: format, tenants",
                          "extra_forbidden") for k in unknown]
    if errors:
        raise ConfigValidationError(errors, "config file refused")
    return doc


@dataclass(frozen=True)
class TenantChange:
    """What importing the file does to one tenant."""

    tenant_id: str
    current_version: int
    current: dict[str, Any] | None
    target: dict[str, Any]
    diff: dict[str, Any]

    @property
    def changes(self) -> bool:
        return bool(self.diff) or self.current is None


def plan_import(repo: TenantConfigRepository, doc: dict[str, Any]) -> list[TenantChange]:
    """Validate every tenant of the file and compute its diff; nothing is written.

    Raises:
        ConfigValidationError: every problem of the whole file at once, each field named
            ``tenants.<id>.<field>``.
    """
    errors: list[FieldError] = []
    targets: dict[str, dict[str, Any]] = {}
    for tenant_id, config in doc["tenants"].items():
        where = f"tenants.{tenant_id}"
        try:
            validate_tenant_id(tenant_id)
            targets[tenant_id] = validate_config(config).model_dump()
        except ConfigValidationError as exc:
            errors += [FieldError(f"{where}.{e.field}", e.message, e.type) for e in exc.errors]
    if errors:
        raise ConfigValidationError(errors, f"{len(errors)} problem(s) in the file; nothing "
                                    "was imported")
    stored = {r.tenant_id: r for r in repo.get_many(sorted(targets))}
    plan = []
    for tenant_id, target in sorted(targets.items()):
        record = stored.get(tenant_id)
        current = record.config if record else None
        plan.append(TenantChange(tenant_id, record.version if record else 0, current,
                                 target, config_diff(current, target)))
    return plan


def apply_import(repo: TenantConfigRepository, plan: list[TenantChange], *,
                 actor: str = "import", reason: str | None = None) -> list[tuple[str, int]]:
    """Apply a plan all-or-nothing; returns ``(tenant_id, new_version)`` per written tenant.

    Each write expects the version the plan saw, so a change made since the plan fails the
    import instead of being overwritten. If any write fails, the writes already made are
    reverted (each tenant restored to its previous config, or deleted if it had none; the
    reverts are audited like any change) and the error is raised.

    Raises:
        ConfigValidationError: ``reason`` is not one line of at most 500 characters (the
            API's and the console's rule), before anything is written.
    """
    reason = check_reason(reason)
    done: list[tuple[TenantChange, int]] = []
    try:
        for change in plan:
            if not change.changes:
                continue
            resolved = repo.update_config(change.tenant_id, change.target, False,
                             expected_version=change.current_version, actor=actor,
                             reason=reason or "config-as-code import")
            done.append((change, resolved.version))
    except TenantConfigError:
        for change, version in reversed(done):
            why = "revert: the import failed, so none of it is kept"
            if change.current is None:
                repo.delete_config(change.tenant_id, expected_version=version, actor=actor,
                                   reason=why)
            else:
                repo.update_config(change.tenant_id, change.current, False,
                                   expected_version=version, actor=actor, reason=why)
        raise
    return [(change.tenant_id, version) for change, version in done]


def describe_plan(plan: list[TenantChange]) -> list[str]:
    """Human-readable lines: one header per tenant, one line per changed field."""
    lines = []
    for change in plan:
        if not change.changes:
            lines.append(f"= {change.tenant_id}: unchanged (version {change.current_version})")
            continue
        verb = "create" if change.current is None else f"update v{change.current_version}"
        lines.append(f"~ {change.tenant_id}: {verb}")
        for field, (old, new) in change.diff.items():
            if change.current is None:
                lines.append(f"    {field}: {json.dumps(new)}")
            else:
                lines.append(f"    {field}: {json.dumps(old)} -> {json.dumps(new)}")
    return lines
