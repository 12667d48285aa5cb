"""Benchmark pairs by name, as the CLI and recipes refer to them."""

from __future__ import annotations

from typing import Any

from otmap.benchmarks.brenier import BrenierPair
from otmap.benchmarks.gaussian import BenchmarkPair, GaussianPair
from otmap.benchmarks.w2b import W2BenchmarkPair
from otmap.utils.registry import Registry

PAIRS: Registry[BenchmarkPair] = Registry("benchmark")
PAIRS.register("gaussian", GaussianPair)
PAIRS.register("brenier", BrenierPair)
PAIRS.register("w2b", W2BenchmarkPair)


def benchmark_pair(name: str, dim: int, seed: int = 0, **options: Any) -> BenchmarkPair:
    """``GaussianPair``, ``BrenierPair`` or ``W2BenchmarkPair`` (``root=...``) by name."""
    return PAIRS.make(name, dim=dim, seed=seed, **options)
