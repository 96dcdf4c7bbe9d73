"""WCAG 2.x contrast: which text colour stays readable on a tenant's brand colour.

One formula for the console's pages and the notebooks' answer cards: a tenant's colours
must never make its own answers unreadable, wherever they are shown.
"""

from __future__ import annotations

BLACK, WHITE = "#000000", "#FFFFFF"


def relative_luminance(hex_color: str) -> float:
    """WCAG relative luminance of ``#RRGGBB`` (sRGB channels linearised at 0.04045)."""
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio of two ``#RRGGBB`` colours, from 1 (same) to 21 (black on white)."""
    hi, lo = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def readable_text(background: str, dark: str = BLACK, light: str = WHITE) -> str:
    """``dark`` or ``light``, whichever has the higher contrast on ``background`` (a
    validated ``#RRGGBB``); a tie goes to ``dark``."""
    return dark if contrast_ratio(background, dark) >= contrast_ratio(background, light) else light
