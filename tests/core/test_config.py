"""The solver's options as one object: validation, overrides, and what None resolves to."""

from __future__ import annotations

import pytest
import torch

from otmap.core.config import SolverConfig
from otmap.core.costs import StrongQuadratic, WeakKernel, WeakQuadratic
from otmap.core.maps import DeterministicMap, StochasticMap
from otmap.core.schedules import Constant, Cosine
from otmap.core.solver import NeuralOT
from otmap.errors import InputError
from otmap.nets import MapMLP, PotentialMLP
from otmap.train.config import TrainConfig


def _players(stochastic: bool = False):
    if stochastic:
        return StochasticMap(MapMLP(4, 2, hidden=[8]), noise_dim=2), PotentialMLP(2, hidden=[8])
    return DeterministicMap(MapMLP(2, 2, hidden=[8])), PotentialMLP(2, hidden=[8])


@pytest.mark.parametrize(("options", "message"), [
    ({"k_map": 0}, "train.k_map must be a positive integer"),
    ({"steps": 2.5}, "train.steps must be a positive integer"),
    ({"lr_map": -1}, "train.lr_map must be positive"),
    ({"betas": [0.5]}, "train.betas must be two numbers"),
    ({"ema_decay": 1.0}, "train.ema_decay must be a number in"),
    ({"potential_all_samples": "yes"}, "train.potential_all_samples must be true or false"),
])
def test_bad_solver_options_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        SolverConfig(**options)


def test_overrides_replace_the_config_and_unknown_names_are_refused():
    t, f = _players()
    solver = NeuralOT(t, f, StrongQuadratic(), SolverConfig(lr_map=3e-4, k_map=3), k_map=7)
    assert (solver.k_map, solver.lr_map) == (7, 3e-4)
    assert solver.map_optimizer.param_groups[0]["lr"] == 3e-4
    with pytest.raises(InputError, match="did you mean 'k_map'"):
        NeuralOT(t, f, StrongQuadratic(), k_maps=2)


def test_none_resolves_from_the_map_and_cost():
    t, f = _players()
    solver = NeuralOT(t, f, StrongQuadratic())
    assert (solver.k_map, solver.num_samples, solver.potential_samples) == (10, 1, 1)
    ts, fs = _players(stochastic=True)
    weak = NeuralOT(ts, fs, WeakQuadratic(gamma=0.5), potential_all_samples=True)
    assert (weak.k_map, weak.num_samples, weak.potential_samples) == (5, 4, 4)
    with pytest.raises(InputError, match="needs num_samples >= 2"):
        NeuralOT(ts, fs, WeakKernel(gamma=0.5), num_samples=1)
    with pytest.raises(InputError, match="deterministic map takes num_samples=1"):
        NeuralOT(t, f, StrongQuadratic(), num_samples=2)


def test_the_schedule_spans_the_configured_steps():
    t, f = _players()
    solver = NeuralOT(t, f, StrongQuadratic(), steps=100)
    assert isinstance(solver.lr_schedule, Cosine)
    assert solver.lr_schedule(50) == pytest.approx(Cosine(100)(50))
    assert isinstance(NeuralOT(t, f, StrongQuadratic(), lr_schedule="constant").lr_schedule,
                      Constant)


def test_a_train_config_is_passed_whole_to_the_solver():
    config = TrainConfig(lr_potential=2e-4, gradient_penalty=0.5, batch_size=8)
    t, f = _players()
    solver = NeuralOT(t, f, StrongQuadratic(), config)
    assert solver.config is config
    assert solver.potential_optimizer.param_groups[0]["lr"] == 2e-4
    assert [r.name for r in solver.regularizers] == ["gradient_penalty"]
    loss, stats = solver.potential_loss(torch.randn(8, 2), torch.randn(8, 2))
    assert set(stats) == {"f_y", "f_t", "gradient_penalty"} and loss.requires_grad
