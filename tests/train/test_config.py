"""TrainConfig: one declaration of each option, built from a config, a mapping or overrides."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import otmap
from otmap.core.config import SolverConfig
from otmap.errors import InputError
from otmap.train.config import TrainConfig


def test_train_config_extends_the_solver_config_without_repeating_fields():
    solver_fields = {f.name for f in dataclasses.fields(SolverConfig)}
    train_fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert issubclass(TrainConfig, SolverConfig)
    assert solver_fields <= set(train_fields) and len(train_fields) == len(set(train_fields))


def test_build_from_none_a_mapping_or_a_config_with_overrides():
    assert TrainConfig.build() == TrainConfig()
    assert TrainConfig.build({"steps": 10}, batch_size=8) == TrainConfig(steps=10, batch_size=8)
    base = TrainConfig(steps=10, lr_map=3e-4)
    built = TrainConfig.build(base, seed=5)
    assert (built.steps, built.lr_map, built.seed) == (10, 3e-4, 5) and base.seed == 0
    assert TrainConfig.build(base) is base


@pytest.mark.parametrize(("config", "overrides", "message"), [
    (None, {"step": 10}, "fit: unknown key 'step'; did you mean 'steps'"),
    ({"batchsize": 8}, {}, "unknown key 'batchsize'"),
    ("fast", {}, "config must be an otmap.TrainConfig or a mapping"),
    (None, {"steps": 0}, "train.steps must be a positive integer"),
])
def test_bad_configs_name_the_problem(config, overrides, message):
    with pytest.raises(InputError, match=message):
        TrainConfig.build(config, "fit", **overrides)


def test_fit_takes_a_config_and_overrides_checked_against_it():
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    config = otmap.TrainConfig(steps=4, batch_size=16, eval_every=4, eval_samples=32,
                               lr_schedule="constant")
    small = {"map": {"hidden": [8]}, "potential": {"hidden": [8]}}
    result = otmap.fit(x, x + 1, config, seed=3, progress=False, **small)
    recorded = result.config["train"]
    assert (recorded["steps"], recorded["seed"], recorded["k_map"]) == (4, 3, 10)
    with pytest.raises(InputError, match="did you mean 'batch_size'"):
        otmap.fit(x, x + 1, config, batch=16, progress=False)
