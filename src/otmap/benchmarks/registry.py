"""Benchmark pairs by name, as the CLI and recipes refer to them."""

from __future__ import annotations

from typing import Any

from otmap.benchmarks.brenier import BrenierPair
from otmap.benchmarks.gaussian import BenchmarkPair, GaussianPair
from otmap.benchmarks.w2b import W2BenchmarkPair
from otmap.errors import InputError

PAIRS: dict[str, type[BenchmarkPair]] = {"gaussian": GaussianPair, "brenier": BrenierPair,
                                         "w2b": W2BenchmarkPair}


def benchmark_pair(name: str, dim: int, seed: int = 0, **options: Any) -> BenchmarkPair:
    """``GaussianPair``, ``BrenierPair`` or ``W2BenchmarkPair`` (``root=...``) by name."""
    if not isinstance(name, str) or name not in PAIRS:
        raise InputError(f"unknown benchmark {name!r}; choose one of {sorted(PAIRS)}")
    return PAIRS[name](dim=dim, seed=seed, **options)
