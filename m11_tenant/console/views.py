"""Pure helpers the pages use to show configs: readable colours, values, diffs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from m11_tenant.schema import config_diff
from m11_tenant.store import CostAlert


def _luminance(hex_color: str) -> float:
    """WCAG relative luminance of ``#RRGGBB``."""
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def readable_text(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (a validated ``#RRGGBB``):
    a tenant's colours must not make its own answers unreadable."""
    dark, light = "#111111", "#FFFFFF"
    return dark if contrast_ratio(background, dark) >= contrast_ratio(background, light) else light


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
