"""The gradient-of-a-convex-potential map (otmap.nets.icnn): convexity of the ICNN, a symmetric
Jacobian, the affine part against a hand-computed map, training gradients, bad input."""

from __future__ import annotations

import pytest
import torch

from otmap.errors import InputError
from otmap.nets import build_net
from otmap.nets.icnn import DenseICNN, GradientICNNMap
from otmap.train.fit import _default_specs


def _scrambled(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The module with every parameter redrawn (so the checks do not rest on the init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


@pytest.mark.parametrize("activation", ["celu", "softplus"])
def test_dense_icnn_is_convex_along_random_segments(activation):
    phi = _scrambled(DenseICNN(5, [16, 16, 8], rank=2, activation=activation).double())
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 500, 5, generator=g, dtype=torch.float64) * 3
    t = torch.rand(500, 1, generator=g, dtype=torch.float64)
    # Jensen: phi(t a + (1 - t) b) <= t phi(a) + (1 - t) phi(b)
    gap = t[:, 0] * phi(a) + (1 - t[:, 0]) * phi(b) - phi(t * a + (1 - t) * b)
    assert gap.min() >= -1e-9


def test_gradient_map_jacobian_is_symmetric():
    net = _scrambled(GradientICNNMap(4, hidden=[8, 8], rank=1)).double()
    net.fit_scaling(torch.randn(100, 4, dtype=torch.float64) * 2 + 1,
                    torch.randn(100, 4, dtype=torch.float64) * 3)
    for x in torch.randn(5, 4, dtype=torch.float64):
        jac = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x)
        assert torch.allclose(jac, jac.T, atol=1e-10)
        assert not torch.allclose(jac, torch.eye(4, dtype=torch.float64))


def test_gradient_map_affine_part_matches_hand_computation():
    net = GradientICNNMap(3, hidden=[4]).double()
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        net.in_shift.copy_(torch.tensor([1.0, 0.0, -1.0]))
        net.in_scale.fill_(2.0)
        net.out_scale.fill_(0.5)
        net.quadratic.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 3.0]]))
        net.shift.copy_(torch.tensor([0.1, 0.2, 0.3]))
        net.phi.out.fill_(-1e4)  # softplus(-1e4) = 0: phi contributes nothing
    u = (x - torch.tensor([1.0, 0.0, -1.0])) / 2.0
    sym = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    expected = x + 0.5 * (u @ sym + torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    assert torch.allclose(net(x), expected, atol=1e-12)


def test_gradient_map_starts_near_identity_and_trains():
    net = GradientICNNMap(6, hidden=[32, 32])
    x = torch.randn(64, 6)
    net.fit_scaling(x, x)
    assert (net(x) - x).abs().max() < 1e-2
    with torch.no_grad():
        assert not net(x).requires_grad  # evaluation keeps no graph
    loss = (net(x) - 2 * x).square().mean()
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["quadratic"].abs().sum() > 0 and grads["phi.out"].abs().sum() > 0


def test_gradient_map_spec_and_bad_input():
    map_spec, _, _ = _default_specs((8,), (8,), {"name": "GradientICNNMap"}, None, False)
    net = build_net(map_spec)
    assert isinstance(net, GradientICNNMap) and net(torch.randn(2, 8)).shape == (2, 8)
    with pytest.raises(InputError, match="must be equal"):
        GradientICNNMap(3, 2)
    with pytest.raises(InputError, match="convex non-decreasing"):
        DenseICNN(3, [4], activation="silu")
