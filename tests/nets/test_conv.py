"""The convolutional networks (otmap.nets.conv): shapes, output range, the identity UNet."""

from __future__ import annotations

import pytest
import torch

from otmap.errors import InputError
from otmap.nets import build_net


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
