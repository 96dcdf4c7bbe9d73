"""Pure helpers the pages use to show configs: readable colours, values, diffs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from m11_tenant import colors
from m11_tenant.schema import config_diff
from m11_tenant.store import CostAlert


def readable_text(background: str) -> str:
    """Near-black or white, whichever reads better on ``background`` (the console's dark
    text is ``#111111``)."""
    return colors.readable_text(background, dark="#111111")


def shown(value: Any) -> str:
    """A config value as text: ``null`` for unset, JSON for objects, the string itself."""
    if value is None:
        return "null (not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(value, indent=1, ensure_ascii=False) if value else "{} (none)"
    return str(value)


def diff_rows(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
              ) -> list[tuple[str, str, str]]:
    """``(field, old, new)`` for every field that differs (branding flattened)."""
    return [(name, shown(before), shown(after))
            for name, (before, after) in config_diff(old, new).items()]


def latest_month(alerts: Sequence[CostAlert]) -> list[CostAlert]:
    """The cost alerts of the newest month among ``alerts``, lowest threshold first."""
    if not alerts:
        return []
    month = max(alert.month for alert in alerts)
    return sorted((a for a in alerts if a.month == month), key=lambda a: a.threshold_pct)
