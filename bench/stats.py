"""Small statistics over repeated runs."""

from __future__ import annotations

from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    """The median; the mean of the two middle values for an even count."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far the repetitions disagree, as a fraction."""
    centre = median(values)
    if centre == 0:
        return 0.0
    return (max(values) - min(values)) / centre
