"""Odd values in run configurations (otmap.experiments.config) that the property tests found."""

from __future__ import annotations

import yaml

from otmap.experiments.config import RunConfig


def test_a_number_as_run_name():
    config = RunConfig.from_dict(yaml.safe_load("name: 2024\ndescription: 1.5"))
    assert (config.name, config.description) == ("2024", "1.5")
