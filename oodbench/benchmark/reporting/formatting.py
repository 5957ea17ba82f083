"""How numbers are written in leaderboards and reports.

Metrics are stored as fractions in ``results.csv`` and shown as percentages with two decimals
(``pct``); a spread over seeds is appended as ``± std`` only when it is positive, and a missing value
is an en dash ``–``. Every table in every document goes through these few functions, so the same
number reads the same everywhere.
"""
from __future__ import annotations

import math

import numpy as np


def is_missing(x) -> bool:
    """True for ``None`` and float NaN (numpy floats included)."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(v, std=None, digits=2) -> str:
    """A fraction as a percentage: ``pct(0.9512, 0.003) == "95.12 ± 0.30"``; ``–`` when missing."""
    if is_missing(v):
        return "–"
    s = f"{100 * v:.{digits}f}"
    if std is not None and not is_missing(std) and std > 0:
        s += f" ± {100 * std:.{digits}f}"
    return s


def ci_str(lo, hi) -> str:
    """A confidence interval of fractions as percentages with one decimal: ``[93.1, 96.4]``."""
    if is_missing(lo) or is_missing(hi):
        return "–"
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def num(v, digits=3) -> str:
    """A measured quantity (seconds, MB, counts) with about ``digits`` significant digits; very large
    or very small values in scientific notation; integers as they are."""
    if is_missing(v):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
        return f"{v:.{digits - 1}e}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{max(digits - 1, 1)}f}"


def yes_no(v) -> str:
    """``True`` → ``yes``, ``False`` → ``no``, ``None`` → ``–``, anything else as text."""
    return "yes" if v is True else ("no" if v is False else ("–" if v is None else str(v)))
