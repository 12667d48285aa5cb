"""Image-side building blocks: embeddings, conv networks, OTM's regularisers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import otmap
from otmap.core.costs import InnerProduct, StrongQuadratic
from otmap.core.embeddings import GrayToRGB, LinearProjection, Reshape, Upsample, build_embedding
from otmap.core.maps import DeterministicMap
from otmap.errors import InputError
from otmap.nets import build_net


def test_embeddings_shapes_and_determinism():
    z = torch.randn(5, 192)
    up = Upsample(32, shape=(3, 8, 8))
    assert up(z).shape == (5, 3, 32, 32)
    assert torch.equal(up(z), up(z))
    # bicubic up-sampling of a constant image is that constant
    assert torch.allclose(Upsample(16)(torch.full((1, 1, 4, 4), 0.3)), torch.tensor(0.3))
    assert Reshape((3, 8, 8))(z).shape == (5, 3, 8, 8)
    a, b = LinearProjection(3, 10, seed=1), LinearProjection(3, 10, seed=1)
    x = torch.randn(7, 3)
    assert torch.equal(a(x), b(x))
    assert torch.allclose(a(x).norm(dim=1), x.norm(dim=1), atol=1e-5)  # an isometry
    assert not torch.equal(LinearProjection(3, 10, seed=2)(x), a(x))
    gray = torch.randn(2, 1, 4, 4)
    assert torch.equal(GrayToRGB()(gray)[:, 2], gray[:, 0])
    with pytest.raises(InputError, match="GrayToRGB needs"):
        GrayToRGB()(torch.randn(2, 3, 4, 4))
    with pytest.raises(InputError, match="unknown embedding"):
        build_embedding({"name": "Bicubic"})


def test_conv_networks_shapes_and_identity_unet():
    f = build_net({"name": "ResNetPotential", "in_channels": 1, "channels": [16, 32, 32]})
    assert f(torch.randn(4, 1, 16, 16)).shape == (4,)
    g = build_net({"name": "UpsampleGenerator", "nz": 48, "out_channels": 1, "size": 16,
                   "channels": [64, 32, 16]})
    out = g(torch.randn(4, 48))
    assert out.shape == (4, 1, 16, 16) and out.abs().max() <= 1
    u = build_net({"name": "UNet", "in_channels": 2, "out_channels": 1, "channels": [16, 32]})
    x = torch.randn(3, 2, 16, 16)
    assert torch.equal(u(x), x[:, :1])  # a residual UNet starts at the identity
    with pytest.raises(InputError, match="divisible by 2"):
        u(torch.randn(1, 2, 15, 15))
    with pytest.raises(InputError, match="4 \\* 2\\^k"):
        build_net({"name": "UpsampleGenerator", "nz": 8, "size": 24})


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
    x = torch.randn(8, 4)
    for cost, grad_c in ((StrongQuadratic(), lambda qx, ty: ty - qx),
                         (InnerProduct(reduction="mean"), lambda qx, ty: -qx / 4)):
        solver, net = _solver(cost, a, gradient_optimality=1.0)
        ty = net(x).detach().requires_grad_(True)
        expected = (a - grad_c(x, ty.detach()).mean(0)).norm()
        go = solver.gradient_optimality_term(x, ty, solver.potential(ty))
        assert torch.allclose(go, expected, atol=1e-5)
        go.backward()  # differentiable in f's parameters: d|a - m|/da = (a - m)/|a - m|
        m = grad_c(x, ty.detach()).mean(0)
        assert torch.allclose(solver.potential.a.grad, (a - m) / expected, atol=1e-5)


def test_gradient_penalty_is_per_sample():
    a = torch.tensor([3.0, 4.0, 0.0, 0.0])  # |grad f| = 5 at every point
    solver, _ = _solver(StrongQuadratic(), a, gradient_penalty=1.0)
    y_hat = torch.randn(16, 4).requires_grad_(True)
    gp = solver.gradient_penalty_term(y_hat, solver.potential(y_hat))
    assert gp.item() == pytest.approx(16.0)  # (5 - 1)^2, not (5/B - 1)^2


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
