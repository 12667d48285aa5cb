"""Maps and their noise injections."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from otmap.core.maps import ChannelNoise, ConcatNoise, DeterministicMap, StochasticMap
from otmap.errors import InputError


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
    with pytest.raises(InputError, match="choose one of \\['concat', 'channels'\\]"):
        StochasticMap(_Sum(), noise_dim=1, inject="condition")


def test_deterministic_sample_repeats_without_copying():
    t = DeterministicMap(nn.Linear(2, 2))
    ys = t.sample(torch.randn(3, 2), 4)
    assert ys.shape == (3, 4, 2) and ys.stride(1) == 0
