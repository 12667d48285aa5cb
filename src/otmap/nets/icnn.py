"""A map that is the gradient of a potential built from an input-convex network.

Brenier: the quadratic-cost OT map is the gradient of a convex function, so it is curl-free
with a symmetric Jacobian. :class:`GradientICNNMap` builds maps of that form,

    T(x) = x + c * grad_x g(x_n),    g(u) = 1/2 u^T A u + b^T u + phi(u),

with ``x_n = (x - mu) / sigma`` (one scalar sigma, so T - x stays a gradient field), ``A`` a
learned symmetric matrix (the affine part of the map; it may be indefinite, so the map can
contract as well as expand), ``phi`` a dense input-convex network (Amos et al. 2017; the dense
quadratic form of Korotin et al. 2019) and ``c`` the target's scale. Everything starts at zero
but phi's last layer, which starts small: the map is (nearly) the identity at initialisation.

Opt-in only: on the W2 benchmark (D = 64) it trains far more slowly than the default MLP map,
even by regression onto the true map, and its min-max runs diverged (docs/benchmarks.md,
"A gradient-of-ICNN map").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otmap.errors import InputError
from otmap.nets.mlp import _Scaled

#: convex, non-decreasing activations (what keeps phi convex)
CONVEX_ACTIVATIONS = {"celu": F.celu, "softplus": F.softplus}


def _positive(raw: Tensor) -> Tensor:
    """The non-negative weights of phi's convex path, ``softplus(raw)``."""
    return F.softplus(raw)


class DenseICNN(nn.Module):
    """``phi: [n, d] -> [n]``, convex in its input:

        q_i(u) = sum_r (u . a_{i,r})^2 + W_i u + c_i,     h_1 = act(q_1(u)),
        h_{i+1} = act(U_i h_i / width_i + q_{i+1}(u)),    phi(u) = w . h_K / width_K,

    with ``U_i, w >= 0`` (softplus of raw weights) and ``act`` convex and non-decreasing.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], rank: int = 1,
                 activation: str = "celu") -> None:
        super().__init__()
        if activation not in CONVEX_ACTIVATIONS:
            raise InputError(f"an input-convex network needs a convex non-decreasing "
                             f"activation: choose one of {sorted(CONVEX_ACTIVATIONS)}, got "
                             f"{activation!r}")
        if not hidden or rank < 1:
            raise InputError("DenseICNN needs at least one hidden layer and rank >= 1")
        self.act = CONVEX_ACTIVATIONS[activation]
        self.quadratic = nn.ParameterList(
            [nn.Parameter(torch.randn(in_features, rank * h) / math.sqrt(in_features * rank))
             for h in hidden])
        self.linear = nn.ModuleList([nn.Linear(in_features, h) for h in hidden])
        self.rank = rank
        # softplus(raw) with raw ~ N(0, 1) has mean ~0.8: divided by the width in forward
        self.convex = nn.ParameterList([nn.Parameter(torch.randn(b, a))
                                        for a, b in zip(hidden[:-1], hidden[1:])])
        # the output starts small (softplus(-7) ~ 1e-3), so the map starts near its affine part
        self.out = nn.Parameter(torch.full((hidden[-1],), -7.0))

    def _q(self, i: int, u: Tensor) -> Tensor:
        proj = (u @ self.quadratic[i]).unflatten(-1, (self.rank, -1))
        return proj.square().sum(-2) + self.linear[i](u)

    def forward(self, u: Tensor) -> Tensor:
        h = self.act(self._q(0, u))
        for i, raw in enumerate(self.convex):
            h = self.act(h @ _positive(raw).T / raw.shape[1] + self._q(i + 1, u))
        return h @ _positive(self.out) / h.shape[-1]


class GradientICNNMap(_Scaled):
    """A deterministic map ``R^d -> R^d`` that is a gradient field (module docstring).

    Args:
        in_features: d; ``out_features`` must equal it (a gradient of ``R^d -> R``).
        hidden: widths of the input-convex network's layers.
        rank: rank of each layer's quadratic form.
        activation: ``"celu"`` (default) or ``"softplus"``.

    ``forward`` differentiates g with autograd, and keeps the graph when gradients are on
    (training the map differentiates through ``grad g``: a double backward).
    """

    def __init__(self, in_features: int, out_features: int | None = None,
                 hidden: Sequence[int] = (512, 512, 512), rank: int = 1,
                 activation: str = "celu") -> None:
        if out_features is not None and out_features != in_features:
            raise InputError(f"a gradient map sends R^d to R^d: in_features ({in_features}) "
                             f"and out_features ({out_features}) must be equal; use MapMLP "
                             "for unequal dimensions")
        super().__init__(in_features)
        self.quadratic = nn.Parameter(torch.zeros(in_features, in_features))
        self.shift = nn.Parameter(torch.zeros(in_features))
        self.phi = DenseICNN(in_features, list(hidden), rank, activation)

    def potential(self, u: Tensor) -> Tensor:
        """``g(u) [n]`` at standardised points ``u [n, d]``."""
        a = 0.5 * (self.quadratic + self.quadratic.T)
        return 0.5 * ((u @ a) * u).sum(-1) + u @ self.shift + self.phi(u)

    def forward(self, x: Tensor) -> Tensor:
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            u = self.standardize(x)
            if not u.requires_grad:
                u = u.detach().requires_grad_(True)
            grad = torch.autograd.grad(self.potential(u).sum(), u, create_graph=keep_graph)[0]
        return x + self.out_scale * grad.to(x.dtype)

    @torch.no_grad()
    def fit_scaling(self, x: Tensor, y: Tensor) -> None:
        """Standardise inputs by the source's mean and its mean coordinate std (one scalar);
        scale outputs by the target's mean coordinate std (both ``[n, d]``)."""
        self.in_shift.copy_(x.mean(0))
        self.in_scale.fill_(float(x.std(0).mean().clamp_min(1e-6)))
        self.out_scale.copy_(y.std(0).mean().clamp_min(1e-6))
