"""Benchmark pairs by name, as the CLI and recipes refer to them."""

from __future__ import annotations

from otmap.benchmarks.brenier import BrenierPair
from otmap.benchmarks.gaussian import BenchmarkPair, GaussianPair
from otmap.errors import InputError

PAIRS: dict[str, type[BenchmarkPair]] = {"gaussian": GaussianPair, "brenier": BrenierPair}


def benchmark_pair(name: str, dim: int, seed: int = 0) -> BenchmarkPair:
    """``GaussianPair`` or ``BrenierPair`` by name."""
    if name not in PAIRS:
        raise InputError(f"unknown benchmark {name!r}; choose one of {sorted(PAIRS)}")
    return PAIRS[name](dim=dim, seed=seed)
