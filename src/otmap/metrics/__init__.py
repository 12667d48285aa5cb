"""Metrics for optimal transport maps and sample sets."""

from __future__ import annotations

from otmap.metrics.vectors import (
    cos,
    energy_distance,
    exact_ot_assignment,
    exact_ot_cost,
    l2_uvp,
    sliced_w2,
    total_variance,
    transport_cost,
)

__all__ = [
    "cos",
    "energy_distance",
    "exact_ot_assignment",
    "exact_ot_cost",
    "l2_uvp",
    "sliced_w2",
    "total_variance",
    "transport_cost",
]
