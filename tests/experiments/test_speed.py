"""``otmap bench speed``: both loops run and train the same networks on the same batches, and the
JSON result names each measured case's ratio."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest

from otmap.errors import InputError
from otmap.experiments import speed

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def toy_config():
    return speed.CASES["toy"].config("cpu")


@pytest.mark.parametrize("measure", [speed.measure_ours, speed.measure_plain])
def test_each_loop_measures_the_toy_case_in_process(toy_config, measure):
    result = measure(toy_config, 3, 1)
    assert (result["steps"], result["warmup"]) == (3, 1)
    assert result["steps_per_s"] > 0
    assert result["steps_per_s"] * result["seconds"] == pytest.approx(3, rel=0.02)
    assert result["memory"] == "process_max_rss"
    assert 0 < result["peak_mib"] < math.inf
    assert math.isfinite(result["loss_map"]) and math.isfinite(result["loss_potential"])


def test_plain_loop_trains_both_networks_and_logs_every_step(toy_config):
    result = speed.measure_plain(toy_config, 4, 2)
    assert result["logged"] == 6
    assert result["map_change"] > 0
    assert result["potential_change"] > 0


def test_plain_loop_computes_what_otmap_computes(toy_config):
    """Same networks, same batches, same learning rates: the first step's losses and updates
    agree in float32, so the ratio compares two implementations of one computation (otmap's
    default precision may add bf16 autocast where the hardware has it)."""
    fp32 = dataclasses.replace(toy_config,
                               train=dataclasses.replace(toy_config.train, precision="fp32"))
    ours = speed.measure_ours(fp32, 1, 0)
    plain = speed.measure_plain(toy_config, 1, 0)
    for key in ("loss_map", "loss_potential", "map_change", "potential_change"):
        assert plain[key] == pytest.approx(ours[key], rel=1e-4, abs=1e-6), key


def test_counts_and_case_names_are_checked(toy_config):
    with pytest.raises(InputError, match="steps"):
        speed.measure_plain(toy_config, 0, 1)
    with pytest.raises(InputError, match="unknown speed case"):
        speed.speed_bench(["toy", "nope"], steps=1, device="cpu")


def test_main_prints_table_and_json_ratio_last(capsys):
    args = argparse.Namespace(cases="toy", steps=2, device="cpu", threads=1, json=True,
                              quiet=True)
    assert speed.main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert (result["device"], result["threads"]) == ("cpu", 1)
    assert "vector_ratio" not in result and "image_ratio" not in result
    ours, plain = result["toy"]["ours"], result["toy"]["plain"]
    assert ours["steps"] == plain["steps"] == 2
    assert plain["logged"] == 2 + speed.WARMUP
    assert result["toy_ratio"] == round(ours["steps_per_s"] / plain["steps_per_s"], 3) > 0
    assert ours["peak_mib"] > 0 and plain["peak_mib"] > 0
    assert "ours steps/s" in captured.err and "toy" in captured.err
