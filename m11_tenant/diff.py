"""Field-by-field differences between two config dumps: pure, over plain dicts.

Kept apart from the pydantic model so that storage (which records a diff with every audit
entry) needs nothing but the standard library: no pydantic, templates or guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any]:
    """Field-by-field ``{"field": [old, new]}`` of two config dumps (branding flattened)."""
    flat_old, flat_new = flatten_config(old or {}), flatten_config(new or {})
    return {
        key: [flat_old.get(key), flat_new.get(key)]
        for key in sorted(flat_old.keys() | flat_new.keys())
        if flat_old.get(key) != flat_new.get(key)
    }


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config dump with ``branding`` spread into ``branding.<key>`` fields."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == "branding" and isinstance(value, Mapping):
            flat.update({f"branding.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat
