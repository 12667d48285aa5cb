"""Shared fixtures: a 2-D Gaussian pair with its closed-form OT map, and small fit settings."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

#: small networks and short runs keep every fit to a few seconds on a shared CPU
SMALL_NETS = {"map": {"hidden": [32, 32]}, "potential": {"hidden": [32, 32]}}


def _sqrtm(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.sqrt()) @ v.T


@dataclass
class Gaussian2D:
    """Source N(m1, S1); target = T*(source) with T*(x) = A x + b the quadratic-cost OT map
    (A = S1^-1/2 (S1^1/2 S2 S1^1/2)^1/2 S1^-1/2, symmetric PD, computed in float64)."""

    m1: torch.Tensor
    s1: torch.Tensor
    m2: torch.Tensor
    s2: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    @classmethod
    def make(cls) -> Gaussian2D:
        f64 = torch.float64
        s1 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=f64)
        s2 = torch.tensor([[2.0, -0.6], [-0.6, 1.0]], dtype=f64)
        m1 = torch.tensor([0.5, -1.0], dtype=f64)
        m2 = torch.tensor([2.0, 1.0], dtype=f64)
        r1 = _sqrtm(s1)
        r1_inv = torch.linalg.inv(r1)
        a = r1_inv @ _sqrtm(r1 @ s2 @ r1) @ r1_inv
        a = (a + a.T) / 2
        return cls(m1, s1, m2, s2, a, m2 - a @ m1)

    @property
    def target_variance(self) -> float:
        return float(self.s2.trace())

    def source(self, n: int) -> torch.Tensor:
        """Source samples from torch's global RNG (so runs are seeded by fit's seed)."""
        chol = torch.linalg.cholesky(self.s1).float()
        return self.m1.float() + torch.randn(n, 2) @ chol.T

    def true_map(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() @ self.a.T + self.b).to(x.dtype)

    def target(self, n: int) -> torch.Tensor:
        return self.true_map(self.source(n))

    def l2_uvp(self, predicted: torch.Tensor, x: torch.Tensor) -> float:
        err = (predicted.double() - self.true_map(x).double()).pow(2).sum(1).mean()
        return 100.0 * float(err) / self.target_variance


@pytest.fixture(scope="session")
def gaussian2d() -> Gaussian2D:
    return Gaussian2D.make()


@pytest.fixture
def small_fit_kwargs() -> dict:
    """Options for the fast fits of the result/input tests (a few dozen steps)."""
    return {**SMALL_NETS, "batch_size": 32, "k_map": 2, "progress": False,
            "eval_samples": 64, "lr_schedule": None}


@pytest.fixture(scope="module")
def torch_single_thread():
    """One intra-op thread for these tiny networks: on a shared 2-core machine, torch's default
    of one OpenMP thread per core made each fit 10-20x slower through oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
