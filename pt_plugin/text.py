"""Wording of messages: plurals, numbers shown with the digits that matter, sizes and durations."""
from __future__ import annotations

import math

import numpy as np


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 value', '2 values' (many: the plural when it is not word + 's')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def article(word: str) -> str:
    """'a' or 'an' before word (by its first letter: an image, a curve)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def number(x) -> str:
    """The shortest text that reads back as x in its own precision: 1.0001 stays 1.0001, never '1'."""
    if isinstance(x, (np.floating, np.integer)):
        v = x
    else:
        v = np.float64(x)
    if isinstance(v, np.integer):
        return str(int(v))
    if not math.isfinite(float(v)):
        return str(float(v))
    if v == 0 or 1e-4 <= abs(float(v)) < 1e6:
        return np.format_float_positional(v, unique=True, trim="-")
    return np.format_float_scientific(v, unique=True, trim="-")


def gib(nbytes: float) -> str:
    """Bytes as GiB with three significant digits (never '0.0'): '0.00234 GiB', '12.5 GiB', '1,536 GiB'."""
    value = float(nbytes) / 2**30
    return f"{value:,.0f} GiB" if value >= 1000 else f"{value:.3g} GiB"


def duration(seconds: float) -> str:
    """'45 s', '12 minutes', '3.2 hours', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 1 else "under a second"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:,.1f} days"
