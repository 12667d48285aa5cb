"""The potential step's regularisers as objects: hand-computed values for a linear potential
f(y) = <a, y>, whose gradient is a everywhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from otmap.core.costs import InnerProduct, StrongQuadratic, WeakQuadratic
from otmap.core.regularizers import (
    ExpectileRegularizer,
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


def test_expectile_against_hand_values():
    """delta = c(x, T x) - f(T x) + f(y) - c(x, y) by hand for f = <a, .>; violations weigh
    tau, slack 1 - tau; divided by the target batch's mean coordinate variance."""
    torch.manual_seed(0)
    a = torch.tensor([0.5, -1.0, 2.0])
    x, ty, y = torch.randn(6, 3), torch.randn(6, 3), torch.randn(8, 3)
    f = _Linear(a)
    term = ExpectileRegularizer(2.0, StrongQuadratic(), nn.Identity(), tau=0.9)
    value = term.term(PotentialBatch(x, ty, f(ty), y, f_y=f(y)))
    yb = y[:6]  # the first min(6, 8) pairs
    delta = (0.5 * ((ty - x) ** 2).sum(1) - ty @ a + yb @ a - 0.5 * ((yb - x) ** 2).sum(1))
    w = torch.where(delta >= 0, 0.9, 0.1)
    s = y.var(0).mean()
    assert 0 < (delta > 0).sum() < 6  # both sides of the asymmetry are exercised
    assert value.item() == pytest.approx(((w * delta**2).mean() / s).item(), rel=1e-5)
    value.backward()  # d/da: mean(2 w delta (y - T x)) / s
    expected = (2 * w * delta).unsqueeze(1).mul(yb - ty).mean(0) / s
    assert torch.allclose(f.a.grad, expected, atol=1e-5)
    assert term.weight == 2.0


def test_expectile_sees_no_violation_at_the_exact_solution():
    """T(x) = A x with A symmetric positive definite is the quadratic-cost OT map, and
    f(y) = 1/2 y^T (I - A^-1) y makes T(x) = argmin_y c(x, y) - f(y): then
    f^c(x) + f(y) <= c(x, y) for every pair (Kantorovich's constraint), with equality on
    y = T(x). A map that does not minimise ``c(x, .) - f`` (the identity) is violated on
    every pair (x, A x)."""
    torch.manual_seed(0)
    m = torch.randn(4, 4)
    a = m @ m.T / 4 + 0.5 * torch.eye(4)
    b = torch.eye(4) - torch.linalg.inv(a)
    f = lambda v: 0.5 * ((v @ b) * v).sum(1)  # noqa: E731
    x = torch.randn(64, 4)
    ty, y = x @ a, torch.randn(64, 4) @ a
    term = ExpectileRegularizer(1.0, StrongQuadratic(), nn.Identity(), tau=0.99)
    exact = term.residual(PotentialBatch(x, ty, f(ty), y, f_y=f(y)))
    assert float(exact.max()) <= 1e-5 and float(exact.min()) < -0.1
    on_graph = term.residual(PotentialBatch(x, ty, f(ty), ty, f_y=f(ty)))
    assert torch.allclose(on_graph, torch.zeros(64), atol=1e-5)
    identity = term.residual(PotentialBatch(x, x, f(x), ty, f_y=f(ty)))
    assert float(identity.min()) > 0
    # the loss weighs the violations 99 times the slack
    slack_only = term.term(PotentialBatch(x, ty, f(ty), y, f_y=f(y)))
    assert slack_only.item() == pytest.approx(
        (0.01 * exact.square()).mean().item() / y.var(0).mean().item(), rel=1e-4)


def test_expectile_needs_a_strong_cost_and_a_tau_above_one_half():
    with pytest.raises(InputError, match="weak cost: use gradient_penalty"):
        ExpectileRegularizer(1.0, WeakQuadratic(gamma=0.5), nn.Identity())
    with pytest.raises(InputError, match="expectile_tau must be in"):
        ExpectileRegularizer(1.0, StrongQuadratic(), nn.Identity(), tau=0.3)


def test_build_regularizers_keeps_positive_weights_in_order():
    cost = StrongQuadratic()
    assert build_regularizers(0.0, 0.0, cost, nn.Identity()) == []
    both = build_regularizers(0.5, 1.0, cost, nn.Identity())
    assert [type(r) for r in both] == [GradientOptimality, GradientPenalty]
    assert [r.weight for r in both] == [0.5, 1.0]
    three = build_regularizers(0.5, 1.0, cost, nn.Identity(), expectile=2.0, expectile_tau=0.9)
    assert [type(r) for r in three][-1] is ExpectileRegularizer and three[-1].tau == 0.9
    with pytest.raises(InputError, match="weak cost: use gradient_penalty"):
        build_regularizers(1.0, 0.0, WeakQuadratic(gamma=0.5), nn.Identity())
