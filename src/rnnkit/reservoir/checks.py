"""Hyperparameter checks: each failure is a ValueError of one line naming the
parameter and the range it must lie in."""

from __future__ import annotations

import math


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_positive_number(name: str, value) -> float:
    """``value > 0``."""
    if _number(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    """``value ≥ 0``."""
    if _number(name, value) < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")
    return float(value)


def check_fraction(name: str, value) -> float:
    """``0 < value ≤ 1``."""
    if not 0 < _number(name, value) <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def check_count(name: str, value, minimum: int) -> int:
    """An integer ``≥ minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value
