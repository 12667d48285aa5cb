"""The fixed embeddings Q (otmap.core.embeddings): shapes, determinism, isometry."""

from __future__ import annotations

import pytest
import torch

from otmap.core.embeddings import GrayToRGB, LinearProjection, Reshape, Upsample, build_embedding
from otmap.errors import InputError


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
