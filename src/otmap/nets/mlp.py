"""Fully connected networks for vector data ``[n, d]``.

Both networks standardise their input with fixed buffers (set from data by
:meth:`fit_scaling`), so the same defaults work whatever the data's location and scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from otmap.errors import InputError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


def mlp(in_features: int, out_features: int, hidden: Sequence[int],
        activation: str) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``; the last layer starts at zero (output 0 at init)."""
    if activation not in ACTIVATIONS:
        raise InputError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    sizes = [in_features, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    last = nn.Linear(sizes[-1], out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class _Scaled(nn.Module):
    """Holds the input standardisation ``(x - shift) / scale`` and an output scale."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.register_buffer("in_shift", torch.zeros(in_features))
        self.register_buffer("in_scale", torch.ones(in_features))
        self.register_buffer("out_scale", torch.ones(()))

    def standardize(self, x: Tensor) -> Tensor:
        return (x - self.in_shift) / self.in_scale

    @torch.no_grad()
    def _set_input_scaling(self, x: Tensor) -> None:
        self.in_shift.copy_(x.mean(0))
        self.in_scale.copy_(x.std(0).clamp_min(1e-6))


class MapMLP(_Scaled):
    """A map ``R^d_in -> R^d_out``:

    ``T(x) = x[:, :d_out] + s * (A x_n + b + mlp(x_n))`` when ``residual`` (by default when
    ``d_in == d_out``; ``residual=True`` also works for a stochastic map's input ``cat[x, z]``,
    whose first ``d_out`` features are x, but ``otmap.fit`` does not use it: that start was
    worse on the weak-cost toys), else ``T(x) = s * (A x_n + b + mlp(x_n))``, with ``x_n`` the
    standardised input and ``s`` the target's coordinate std. The linear path learns the affine
    part of the map quickly and the MLP the rest; both start at zero, so a residual map is the
    identity x at initialisation and a non-residual one the constant 0.
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (256, 256, 256),
                 activation: str = "silu", residual: bool | None = None) -> None:
        super().__init__(in_features)
        self.residual = in_features == out_features if residual is None else residual
        if self.residual and in_features < out_features:
            raise InputError("a residual map needs at least as many inputs as outputs")
        self.linear = nn.Linear(in_features, out_features)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.body = mlp(in_features, out_features, hidden, activation)

    def forward(self, x: Tensor) -> Tensor:
        xn = self.standardize(x)
        out = self.out_scale * (self.linear(xn) + self.body(xn))
        return x[:, : out.shape[1]] + out if self.residual else out

    @torch.no_grad()
    def fit_scaling(self, x: Tensor, y: Tensor) -> None:
        """Set the input standardisation from source samples ``x`` and the output scale from
        target samples ``y`` (both ``[n, d]``)."""
        self._set_input_scaling(x)
        self.out_scale.copy_(y.std(0).mean().clamp_min(1e-6))


class PotentialMLP(_Scaled):
    """A potential ``f: R^d -> R``, ``f(y) = s * (mlp(y_n) + 1/2 y_n^T A y_n)``.

    ``A`` is a learned symmetric matrix (``quadratic=True``): quadratic-cost potentials are
    ``1/2 |y|^2`` minus a convex function, so a quadratic part is what they mostly are; the MLP
    (smooth activation, so ``grad f`` is continuous) learns the rest. ``s`` is the target's mean
    coordinate variance, the scale of ``|y|^2``.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256, 256),
                 activation: str = "silu", quadratic: bool = True) -> None:
        super().__init__(in_features)
        self.body = mlp(in_features, 1, hidden, activation)
        # the zero last layer would make f constant and its gradient w.r.t. the body zero:
        # start it small instead so both players receive a signal from step one.
        nn.init.normal_(self.body[-1].weight, std=1e-2)
        self.quadratic = nn.Parameter(torch.zeros(in_features, in_features)) if quadratic else None

    def forward(self, y: Tensor) -> Tensor:
        yn = self.standardize(y)
        out = self.body(yn).squeeze(-1)
        if self.quadratic is not None:
            a = 0.5 * (self.quadratic + self.quadratic.T)
            out = out + 0.5 * ((yn @ a) * yn).sum(-1)
        return self.out_scale * out

    @torch.no_grad()
    def fit_scaling(self, y: Tensor) -> None:
        """Set the input standardisation and output scale from target samples ``[n, d]``."""
        self._set_input_scaling(y)
        self.out_scale.copy_(y.var(0).mean().clamp_min(1e-6))
