"""OTM's regularisers as the solver applies them (``NeuralOT.potential_loss``): hand values for
a linear potential ``f(y) = <a, y>`` (its gradient is ``a`` everywhere) and a linear map. The
regulariser objects on their own: tests/core/test_regularizers.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import otmap
from otmap.core.costs import InnerProduct, StrongQuadratic
from otmap.core.maps import DeterministicMap


class _Linear(nn.Module):
    """``f(y) = <a, y>``: its gradient is ``a`` everywhere."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, y):
        return (y.flatten(1) * self.a).sum(1)


def _solver(cost, a, **kw):
    net = nn.Linear(4, 4)
    return otmap.NeuralOT(DeterministicMap(net), _Linear(a), cost, **kw), net


def test_gradient_optimality_term_against_hand_values():
    a = torch.tensor([0.5, -1.0, 2.0, 0.0])
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    for cost, grad_c in ((StrongQuadratic(), lambda qx, ty: ty - qx),
                         (InnerProduct(reduction="mean"), lambda qx, ty: -qx / 4)):
        solver, net = _solver(cost, a, gradient_optimality=1.0)
        ty = net(x).detach()  # the solver's T(x)
        m = grad_c(x, ty).mean(0)
        expected = (a - m).norm()
        loss, stats = solver.potential_loss(x, y)
        assert torch.allclose(stats["gradient_optimality"], expected, atol=1e-5)
        loss.backward()  # differentiable in f's parameters: d|a - m|/da = (a - m)/|a - m|
        grad = ty.mean(0) - y.mean(0) + (a - m) / expected
        assert torch.allclose(solver.potential.a.grad, grad, atol=1e-5)


def test_gradient_penalty_is_per_sample():
    a = torch.tensor([3.0, 4.0, 0.0, 0.0])  # |grad f| = 5 at every point
    solver, net = _solver(StrongQuadratic(), a, gradient_penalty=1.0)
    x, y = torch.randn(16, 4), torch.randn(16, 4)
    loss, stats = solver.potential_loss(x, y)
    assert stats["gradient_penalty"].item() == pytest.approx(16.0)  # (5 - 1)^2, not (5/B - 1)^2
    loss.backward()  # d(|a| - 1)^2/da = 2 (|a| - 1) a / |a| = 1.6 a, wherever the points are
    grad = net(x).detach().mean(0) - y.mean(0) + 1.6 * a
    assert torch.allclose(solver.potential.a.grad, grad, atol=1e-5)


def test_regularisers_enter_the_potential_loss():
    a = torch.tensor([3.0, 4.0, 0.0, 0.0])
    x, y = torch.randn(16, 4), torch.randn(16, 4)
    torch.manual_seed(0)
    plain, _ = _solver(StrongQuadratic(), a)
    torch.manual_seed(0)
    reg, _ = _solver(StrongQuadratic(), a, gradient_optimality=2.0, gradient_penalty=0.5)
    base, _ = plain.potential_loss(x, y)
    loss, stats = reg.potential_loss(x, y)
    expected = base + 2.0 * stats["gradient_optimality"] + 0.5 * stats["gradient_penalty"]
    assert torch.allclose(loss, expected, atol=1e-5)
    assert stats["gradient_penalty"].item() == pytest.approx(16.0)
