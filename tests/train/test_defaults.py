"""Defaults sized to the data: network widths follow the dimension, deterministic vector maps
take more map updates, and the start of a stochastic vector map."""

from __future__ import annotations

import pytest
import torch

from otmap.core.costs import WeakKernel
from otmap.train.fit import _default_specs, default_width, prepare


@pytest.mark.parametrize("dim", [1, 2, 4, 8, 16, 128])
def test_deterministic_maps_are_wide_at_every_dimension(dim: int):
    map_spec, noise, potential_spec = _default_specs((dim,), (dim,), None, None, False)
    assert map_spec["hidden"] == [512] * 3 == potential_spec["hidden"]
    assert default_width(dim) == 512 and noise is None and map_spec["residual"]


@pytest.mark.parametrize("dim, width", [(1, 128), (2, 128), (4, 128), (8, 256), (16, 512),
                                        (128, 512)])
def test_stochastic_width_follows_dimension(dim: int, width: int):
    map_spec, noise, potential_spec = _default_specs((dim,), (dim,), None, None, True)
    assert map_spec["hidden"] == [width] * 3 == potential_spec["hidden"]
    assert default_width(dim, stochastic=True) == width and noise is not None
    assert map_spec["in_features"] == 2 * dim  # cat[x, z]


@pytest.mark.parametrize("dim, lr", [(2, 1e-3), (64, 1e-3), (128, 2.5e-4), (256, 6.25e-5)])
def test_learning_rate_follows_dimension_and_is_recorded(torch_single_thread, dim: int,
                                                         lr: float):
    x, y = torch.randn(300, dim), torch.randn(300, dim) + 1
    setup = prepare(x, y, steps=2, map={"hidden": [8]}, potential={"hidden": [8]})
    assert setup.solver.lr_map == pytest.approx(lr) == setup.solver.lr_potential
    assert setup.record["train"]["lr_map"] == pytest.approx(lr)
    assert setup.solver.map_optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    own = prepare(x, y, steps=2, lr_map=3e-3, map={"hidden": [8]}, potential={"hidden": [8]})
    assert own.solver.lr_map == 3e-3 and own.solver.lr_potential == pytest.approx(lr)


def test_images_keep_the_base_learning_rate(torch_single_thread):
    x, y = torch.randn(40, 1, 8, 8), torch.randn(40, 1, 8, 8)
    assert prepare(x, y, steps=2).solver.lr_map == 1e-3


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
