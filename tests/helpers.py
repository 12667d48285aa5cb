"""Small fits shared by the test modules (not collected: no test_ prefix)."""

from __future__ import annotations

import torch

import otmap

#: the smallest networks and evaluations that still train end to end
TINY = {"map": {"hidden": [8]}, "potential": {"hidden": [8]}, "batch_size": 8, "k_map": 1,
        "progress": False, "eval_samples": 16, "lr_schedule": None}


def sample_x(n: int = 64, d: int = 2) -> torch.Tensor:
    """``[n, d]`` standard normal samples, seeded by the shape."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(n + d))


def tiny_fit(source=None, target=None, **kwargs) -> otmap.TransportResult:
    """A two-step :func:`otmap.fit` with :data:`TINY` options (``kwargs`` override)."""
    source = sample_x() if source is None else source
    target = sample_x(80) + 1 if target is None else target
    return otmap.fit(source, target, **{"steps": 2, **TINY, **kwargs})
