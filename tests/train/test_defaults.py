"""Defaults sized to the data: network widths follow the dimension, deterministic vector maps
take more map updates, and the start of a stochastic vector map."""

from __future__ import annotations

import pytest
import torch

from otmap.core.costs import WeakKernel
from otmap.train.fit import _default_specs, default_width, prepare


@pytest.mark.parametrize("dim, width", [(1, 128), (2, 128), (4, 128), (8, 256), (16, 512),
                                        (128, 512)])
def test_width_follows_dimension(dim: int, width: int):
    map_spec, noise, potential_spec = _default_specs((dim,), (dim,), None, None, False)
    assert map_spec["hidden"] == [width] * 3 == potential_spec["hidden"]
    assert default_width(dim) == width and noise is None and map_spec["residual"]


def test_user_spec_wins():
    map_spec, _, _ = _default_specs((4,), (4,), {"hidden": [16], "residual": False}, None, False)
    assert map_spec["hidden"] == [16] and map_spec["residual"] is False


def test_k_map_and_sizes_resolved_and_recorded(torch_single_thread):
    x, y = torch.randn(500, 2), torch.randn(500, 2) + 3
    deterministic = prepare(x, y, steps=2)
    assert deterministic.solver.k_map == 10 and deterministic.record["train"]["k_map"] == 10
    stochastic = prepare(x, y, steps=2, cost=WeakKernel(1.0))
    assert stochastic.solver.k_map == 5
    assert prepare(x, y, steps=2, k_map=3).solver.k_map == 3


def test_stochastic_vector_map_start(torch_single_thread):
    """With noise concatenated (4 inputs, 2 outputs) the default map is not residual: it starts
    at the constant 0 (the measured better start); residual=True starts at x for every z."""
    x, y = torch.randn(500, 2), torch.randn(500, 2) + 3
    setup = prepare(x, y, steps=2, cost=WeakKernel(1.0))
    assert setup.record["map"]["residual"] is False
    assert torch.allclose(setup.solver.map.sample(x[:10], 3), torch.zeros(10, 3, 2))
    setup = prepare(x, y, steps=2, cost=WeakKernel(1.0), map={"residual": True})
    ys = setup.solver.map.sample(x[:10], 3)
    assert torch.allclose(ys, x[:10, None].expand(-1, 3, -1), atol=1e-6)
