"""Ground-truth OT benchmark pairs (known quadratic-cost OT maps) and the Bures baseline."""

from __future__ import annotations

from otmap.benchmarks.brenier import BrenierPair, GaussianMixtureSampler
from otmap.benchmarks.gaussian import (
    BenchmarkPair,
    BuresMap,
    GaussianPair,
    GaussianSampler,
    PushforwardSampler,
    Sampler,
    gaussian_ot_map,
)

__all__ = [
    "BenchmarkPair",
    "BrenierPair",
    "BuresMap",
    "GaussianMixtureSampler",
    "GaussianPair",
    "GaussianSampler",
    "PushforwardSampler",
    "Sampler",
    "gaussian_ot_map",
]
