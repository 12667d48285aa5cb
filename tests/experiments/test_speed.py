"""``otmap bench speed``: both loops run and train the same networks on the same batches, the
reported steps per second are the timed steps over the time they took (warmup excluded), peak
memory is the process's, and the JSON result names each measured case's ratio."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from otmap.cli import main
from otmap.core.solver import NeuralOT
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
    assert result["memory"] == "process_max_rss"
    assert 0 < result["peak_mib"] < math.inf
    assert math.isfinite(result["loss_map"]) and math.isfinite(result["loss_potential"])


class FakeClock:
    """A ``perf_counter`` that moves only by :meth:`tick`: the time a harness measures is then a
    hand count of the ticks between its two readings."""

    def __init__(self, dt: float) -> None:
        self.now, self.dt, self.ticks = 1000.0, dt, 0

    def perf_counter(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += self.dt
        self.ticks += 1


def _fake_clock(monkeypatch, dt: float) -> FakeClock:
    clock = FakeClock(dt)
    monkeypatch.setattr(speed, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    return clock


def test_ours_reports_timed_steps_over_their_time(toy_config, monkeypatch):
    """Each train_step costs 0.25 s of fake time: 4 timed steps after 2 warmup steps take
    exactly 1 s, 4 steps/s. Timing the warmup too would give 1.5 s, timing 3 steps 0.75 s."""
    clock = _fake_clock(monkeypatch, 0.25)
    original = NeuralOT.train_step

    def train_step(solver, *args, **kwargs):
        clock.tick()
        return original(solver, *args, **kwargs)

    monkeypatch.setattr(NeuralOT, "train_step", train_step)
    result = speed.measure_ours(toy_config, 4, 2)
    assert clock.ticks == 6
    assert result["seconds"] == pytest.approx(1.0)
    assert result["steps_per_s"] == pytest.approx(4.0)


def test_plain_reports_timed_steps_over_their_time(toy_config, monkeypatch):
    """The plain loop draws one target batch per step; each draw costs 0.5 s of fake time
    (also those of the setup and the warmup, which must not be timed): 3 timed steps take
    1.5 s, 2 steps/s."""
    clock = _fake_clock(monkeypatch, 0.5)
    source, target = speed._samplers(toy_config)

    class TickingTarget:
        shape = target.shape

        def sample(self, n):
            clock.tick()
            return target.sample(n)

    monkeypatch.setattr(speed, "_samplers", lambda config: (source, TickingTarget()))
    result = speed.measure_plain(toy_config, 3, 2)
    assert result["logged"] == 5
    assert clock.ticks >= 5  # the setup may draw a few more before the loop
    assert result["seconds"] == pytest.approx(1.5)
    assert result["steps_per_s"] == pytest.approx(2.0)


def test_ours_steps_per_second_in_real_time(toy_config, monkeypatch):
    """A train_step that only sleeps 20 ms: the real clock must give at most 50 steps/s (sleep
    never returns early) and not far less (the loop adds next to nothing)."""
    stats = {"loss_map": torch.tensor(1.0), "loss_potential": torch.tensor(2.0)}

    def train_step(solver, *args, **kwargs):
        time.sleep(0.02)
        return stats

    monkeypatch.setattr(NeuralOT, "train_step", train_step)
    result = speed.measure_ours(toy_config, 8, 1)
    assert 0.5 / 0.02 < result["steps_per_s"] <= 1 / 0.02
    assert (result["loss_map"], result["loss_potential"]) == (1.0, 2.0)
    assert result["map_change"] == result["potential_change"] == 0  # nothing was trained


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise AssertionError(f"no {field} in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_cpu_peak_memory_is_the_process_high_water_mark(toy_config):
    """On a CPU peak_mib is the process's peak resident set: the kernel's own count (VmHWM)
    bounds it from both sides (a unit slip of KiB vs bytes would be 1024x off)."""
    before = _status_mib("VmHWM")
    result = speed.measure_plain(toy_config, 1, 0)
    after = _status_mib("VmHWM")
    assert before - 1 <= result["peak_mib"] <= after + 1


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
    argv = ["bench", "speed", "--cases", "toy", "--steps", "2", "--device", "cpu",
            "--threads", "1", "--json", "--quiet"]
    assert main(argv) == 0
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
