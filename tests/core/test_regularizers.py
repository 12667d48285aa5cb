"""The potential step's regularisers as objects: hand-computed values for a linear potential
f(y) = <a, y>, whose gradient is a everywhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from otmap.core.costs import InnerProduct, StrongQuadratic, WeakQuadratic
from otmap.core.regularizers import (
    GradientOptimality,
    GradientPenalty,
    PotentialBatch,
    build_regularizers,
)
from otmap.errors import InputError


class _Linear(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (y.flatten(1) * self.a).sum(1)


def test_gradient_optimality_against_hand_values():
    a = torch.tensor([0.5, -1.0, 2.0, 0.0])
    x = torch.randn(8, 4)
    for cost, grad_c in ((StrongQuadratic(), lambda qx, ty: ty - qx),
                         (InnerProduct(reduction="mean"), lambda qx, ty: -qx / 4)):
        f = _Linear(a)
        term = GradientOptimality(1.0, cost, nn.Identity())
        ty = (x @ torch.randn(4, 4)).requires_grad_(True)
        value = term.term(PotentialBatch(x, ty, f(ty), torch.randn(8, 4)))
        m = grad_c(x, ty.detach()).mean(0)
        assert torch.allclose(value, (a - m).norm(), atol=1e-5)
        value.backward()  # differentiable in f's parameters: d|a - m|/da = (a - m)/|a - m|
        assert torch.allclose(f.a.grad, (a - m) / (a - m).norm(), atol=1e-5)


def test_gradient_optimality_sees_the_embedding():
    a = torch.zeros(4)
    x = torch.randn(8, 2)
    embed = nn.Linear(2, 4).requires_grad_(False)
    ty = torch.randn(8, 4).requires_grad_(True)
    term = GradientOptimality(1.0, StrongQuadratic(), embed)
    value = term.term(PotentialBatch(x, ty, _Linear(a)(ty), ty.detach()))
    expected = (0 - (ty.detach() - embed(x)).mean(0)).norm()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_is_per_sample_and_on_interpolates():
    a = torch.tensor([3.0, 4.0, 0.0, 0.0])  # |grad f| = 5 at every point
    penalty = GradientPenalty(2.0)
    ty, y = torch.zeros(16, 4), torch.ones(12, 4)
    points = penalty.points(ty, y)
    assert points.shape == (12, 4) and points.requires_grad
    eta = points[:, :1]  # y = 1, T(x) = 0: each point is eta * 1
    assert bool(((points == eta) & (eta >= 0) & (eta <= 1)).all())
    f = _Linear(a)
    value = penalty.term(PotentialBatch(ty, ty, f(ty), y, points, f(points)))
    assert value.item() == pytest.approx(16.0)  # (5 - 1)^2, not (5/B - 1)^2
    assert penalty.weight == 2.0


def test_build_regularizers_keeps_positive_weights_in_order():
    cost = StrongQuadratic()
    assert build_regularizers(0.0, 0.0, cost, nn.Identity()) == []
    both = build_regularizers(0.5, 1.0, cost, nn.Identity())
    assert [type(r) for r in both] == [GradientOptimality, GradientPenalty]
    assert [r.weight for r in both] == [0.5, 1.0]
    with pytest.raises(InputError, match="weak cost: use gradient_penalty"):
        build_regularizers(1.0, 0.0, WeakQuadratic(gamma=0.5), nn.Identity())
