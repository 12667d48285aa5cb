"""Maps and their noise injections."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from otmap.core.maps import (
    ChannelNoise,
    ConcatNoise,
    ConditionNoise,
    DeterministicMap,
    StochasticMap,
)
from otmap.errors import InputError
from otmap.nets import CondUNet


class _Sum(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.sum(1, keepdim=True)


def test_concat_noise_adds_features_and_channel_noise_adds_channels():
    x = torch.randn(3, 2)
    assert ConcatNoise(5).noise(x).shape == (3, 5)
    image = torch.randn(3, 1, 4, 4).contiguous(memory_format=torch.channels_last)
    z = ChannelNoise(2).noise(image)
    assert z.shape == (3, 2, 4, 4) and z.is_contiguous(memory_format=torch.channels_last)


def test_stochastic_map_scales_noise_and_concatenates_it():
    t = StochasticMap(_Sum(), noise_dim=3, noise_std=2.0)
    x = torch.zeros(4000, 1)
    out = t(x)  # sum of 3 noises of std 2: std sqrt(12)
    assert out.std().item() == pytest.approx(12 ** 0.5, rel=0.05)
    z = torch.ones(2, 3)
    assert torch.equal(t(torch.ones(2, 1), z), torch.full((2, 1), 4.0))
    assert t.sample(torch.zeros(5, 1), 7).shape == (5, 7, 1)


def test_unknown_injections_are_refused():
    with pytest.raises(InputError, match="choose one of \\['concat', 'channels', 'condition'\\]"):
        StochasticMap(_Sum(), noise_dim=1, inject="film")


class _Shift(nn.Module):
    """``net(x, z) = x + sum(z)``: a network taking its noise as a second argument."""

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return x + z.sum(1, keepdim=True)


def test_condition_noise_is_a_vector_passed_aside():
    image = torch.randn(3, 1, 4, 4)
    assert ConditionNoise(5).noise(image).shape == (3, 5)
    t = StochasticMap(_Shift(), noise_dim=2, noise_std=0.5, inject="condition")
    assert torch.equal(t(torch.zeros(2, 1), torch.ones(2, 2)), torch.full((2, 1), 2.0))
    assert t.noise(image).std().item() < 1.0


def _cond_unet_map(noise_dim: int = 4) -> StochasticMap:
    """A stochastic map on a CondUNet whose UNet weights (not its FiLMs) are random."""
    torch.manual_seed(0)
    net = CondUNet(1, 1, channels=[8, 16], noise_dim=noise_dim)
    with torch.no_grad():
        net.out.weight.normal_(0, 0.1)
    return StochasticMap(net, noise_dim=noise_dim, inject="condition")


def test_conditioned_map_starts_independent_of_its_noise():
    t = _cond_unet_map()
    x = torch.randn(3, 1, 8, 8)
    at_zero = t.net(x, torch.zeros(3, 4))
    assert not torch.equal(at_zero, x)
    assert torch.equal(t(x), at_zero) and torch.equal(t(x, 5 * torch.randn(3, 4)), at_zero)
    assert t.sample(x, 4).shape == (3, 4, 1, 8, 8)


def test_conditioned_map_takes_channels_last_images():
    t = _cond_unet_map()
    x, z = torch.randn(3, 1, 8, 8), torch.randn(3, 4)
    expected = t(x, z)
    t.to(memory_format=torch.channels_last)
    out = t(x.contiguous(memory_format=torch.channels_last), z)
    assert out.shape == (3, 1, 8, 8) and torch.allclose(out, expected, atol=1e-6)


def test_deterministic_sample_repeats_without_copying():
    t = DeterministicMap(nn.Linear(2, 2))
    ys = t.sample(torch.randn(3, 2), 4)
    assert ys.shape == (3, 4, 2) and ys.stride(1) == 0
