"""The convolutional networks (otmap.nets.conv): shapes, output range, the identity UNet, the
noise-conditioned CondUNet and its selection by the default specs."""

from __future__ import annotations

import pytest
import torch

import otmap
from otmap.errors import InputError
from otmap.nets import build_net
from otmap.train.fit import _default_specs


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


UNET_SPEC = {"in_channels": 1, "out_channels": 1, "channels": [8, 16, 32]}


def _perturbed(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with random weights everywhere (its zero-initialised output conv included)."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_cond_unet_is_the_seeded_unet_whatever_the_noise():
    """A CondUNet holds a UNet's blocks under the same names and, for the same seed, the same
    weights; its FiLMs start at zero, so with any UNet weights loaded, net(x, z) = UNet(x)."""
    torch.manual_seed(0)
    u = build_net({"name": "UNet", **UNET_SPEC})
    torch.manual_seed(0)
    c = build_net({"name": "CondUNet", **UNET_SPEC, "noise_dim": 4})
    extra = set(c.state_dict()) - set(u.state_dict())
    assert all(k.startswith("mapping.") or ".films." in k for k in extra)
    assert all(torch.equal(c.state_dict()[k], v) for k, v in u.state_dict().items())
    missing, unexpected = c.load_state_dict(_perturbed(u).state_dict(), strict=False)
    assert set(missing) == extra and not unexpected
    x = torch.randn(3, 1, 16, 16)
    for z in (torch.zeros(3, 4), torch.randn(3, 4), 10 * torch.randn(3, 4)):
        assert torch.equal(c(x, z), u(x))
    assert not torch.equal(u(x), x)  # the comparison is not the trivial identity start


def test_cond_unet_learns_to_use_its_noise():
    """A few Adam steps fitting z-dependent targets make the output depend on z: the FiLMs get
    gradients once the output conv has left zero."""
    torch.manual_seed(0)
    c = build_net({"name": "CondUNet", **UNET_SPEC, "noise_dim": 4, "norm": "instance"})
    opt = torch.optim.Adam(c.parameters(), lr=1e-2)
    x, z = torch.randn(8, 1, 16, 16), torch.randn(8, 4)
    target = x + z[:, :1, None, None]
    for _ in range(5):
        opt.zero_grad()
        (c(x, z) - target).pow(2).mean().backward()
        opt.step()
    with torch.no_grad():
        assert (c(x, z) - c(x, torch.randn(8, 4))).abs().mean() > 1e-2


def test_cond_unet_map_trains_through_fit_defaults(torch_single_thread):
    """A CondUNet map spec on image -> image data under a weak cost: the default specs fill in
    the channels and the noise vector, and two training steps run."""
    x, y = torch.rand(32, 1, 16, 16) * 2 - 1, torch.rand(32, 1, 16, 16) * 2 - 1
    result = otmap.fit(x, y, cost={"name": "WeakQuadratic", "gamma": 0.5},
                       map={"name": "CondUNet", "noise": {"inject": "condition", "noise_dim": 4},
                            "channels": [8, 16]},
                       potential={"channels": [8, 16]}, steps=2, batch_size=4, eval_every=2,
                       eval_samples=8, progress=False)
    assert result.config["map"]["noise"]["inject"] == "condition"
    assert result.config["map"]["in_channels"] == 1 and result.config["map"]["noise_dim"] == 4
    assert result.map.sample(x[:3], 2).shape == (3, 2, 1, 16, 16)


def test_default_specs_select_the_cond_unet_only_when_asked():
    shape = (1, 16, 16)
    map_spec, noise, _ = _default_specs(shape, shape, None, None, stochastic=True)
    assert map_spec["name"] == "UNet" and map_spec["in_channels"] == 2
    assert noise["inject"] == "channels"
    for spec in ({"name": "CondUNet"}, {"noise": {"inject": "condition"}}):
        map_spec, noise, _ = _default_specs(shape, shape, spec, None, stochastic=True)
        assert map_spec["name"] == "CondUNet" and map_spec["in_channels"] == 1
        assert noise["inject"] == "condition" and noise["noise_dim"] == map_spec["noise_dim"] == 128
    _, noise, _ = _default_specs(shape, shape, {"name": "CondUNet"}, None, stochastic=False)
    assert noise["inject"] == "condition"  # a CondUNet map is stochastic under any cost
    with pytest.raises(InputError, match="inject must be 'condition'"):
        _default_specs(shape, shape, {"name": "CondUNet", "noise": {"inject": "channels"}}, None,
                       stochastic=True)
