"""Ground-truth OT benchmark pairs (known quadratic-cost OT maps: Gaussian, Brenier and the
continuous Wasserstein-2 benchmark's) and the Bures baseline."""

from __future__ import annotations

from otmap.benchmarks.brenier import BrenierPair, GaussianMixtureSampler
from otmap.benchmarks.gaussian import (
    BenchmarkPair,
    BuresMap,
    GaussianPair,
    GaussianSampler,
    PushforwardSampler,
    VectorDistribution,
    gaussian_ot_map,
)
from otmap.benchmarks.w2b import W2BenchmarkPair

__all__ = [
    "BenchmarkPair",
    "BrenierPair",
    "BuresMap",
    "GaussianMixtureSampler",
    "GaussianPair",
    "GaussianSampler",
    "PushforwardSampler",
    "VectorDistribution",
    "W2BenchmarkPair",
    "gaussian_ot_map",
]
