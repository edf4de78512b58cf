"""The statistics of inv bench and inv stress (pure, standard library only: the bench scripts
import it in the service venv too)."""
from __future__ import annotations

import math
from typing import Iterable


def median(values: Iterable[float]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not > 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def rate(count: int, seconds: float | None) -> float | None:
    return ratio(float(count), seconds)


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    """A figure for a report's table cell; '-' where there is none."""
    return "-" if value is None else f"{value:{spec}}{suffix}"
