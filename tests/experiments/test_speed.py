"""``otmap bench speed``: both loops run and train the same networks on the same batches, the
reported steps per second are the timed steps over the time they took (warmup excluded), peak
memory is the process's, the JSON result names each measured case's ratio, otmap's loop runs
in the precision asked, and a profile names operators with their share of the step."""

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

import otmap
from otmap.cli import main
from otmap.core.solver import NeuralOT
from otmap.errors import InputError
from otmap.experiments import speed

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def toy_config():
    return speed.CASES["toy"].config("cpu")


@pytest.fixture(scope="module")
def fp32_toy_config(toy_config):
    """The toy case in float32: no timing of precisions when it is prepared."""
    return dataclasses.replace(toy_config,
                               train=dataclasses.replace(toy_config.train, precision="fp32"))


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


def test_ours_reports_timed_steps_over_their_time(fp32_toy_config, monkeypatch):
    """Each train_step costs 0.25 s of fake time: 4 timed steps after 2 warmup steps take
    exactly 1 s, 4 steps/s. Timing the warmup too would give 1.5 s, timing 3 steps 0.75 s, and
    timing the step whose FLOPs are counted after them 1.25 s."""
    clock = _fake_clock(monkeypatch, 0.25)
    original = NeuralOT.train_step

    def train_step(solver, *args, **kwargs):
        clock.tick()
        return original(solver, *args, **kwargs)

    monkeypatch.setattr(NeuralOT, "train_step", train_step)
    result = speed.measure_ours(fp32_toy_config, 4, 2)
    assert clock.ticks == 7
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


def test_plain_loop_computes_what_otmap_computes(toy_config, fp32_toy_config):
    """Same networks, same batches, same learning rates: the first step's losses and updates
    agree in float32, so the ratio compares two implementations of one computation (otmap's
    default precision may add bf16 autocast where the hardware has it)."""
    ours = speed.measure_ours(fp32_toy_config, 1, 0)
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
    # utilisation: the counted FLOPs per step at each loop's rate, over the peak in its precision
    peaks, flops = result["peak_gflops"], result["toy"]["flops_per_step"]
    assert set(peaks) == {"fp32", ours["precision"]} and all(v > 0 for v in peaks.values())
    assert flops > 0
    for loop, precision in ((ours, ours["precision"]), (plain, "fp32")):
        assert loop["achieved_gflops"] == pytest.approx(flops * loop["steps_per_s"] / 1e9,
                                                        rel=1e-3)
        assert loop["utilisation"] == pytest.approx(loop["achieved_gflops"] / peaks[precision],
                                                    rel=1e-2, abs=1e-4)
    assert result["toy_utilisation"] == ours["utilisation"]
    assert "ours util" in captured.err and "GFLOP/step" in captured.err


@pytest.mark.parametrize("k_map", [1, 3])
def test_flops_of_a_linear_step_are_the_hand_count(k_map):
    """T(x) = W x + b (d x d), f(y) = v.y + c, batches of B, as FlopCounterMode counts: a
    matrix product [m, k] @ [k, n] is 2 m k n FLOPs, and backward computes only the gradients
    it needs: those of the updated network's weights and of the activations on the way there,
    never of the data.

    Map update: T forward 2 B d^2, f forward 2 B d; backward: f's input gradient 2 B d (f's
    weights are not updated here), T's weight gradient 2 B d^2 (x needs none).
    Potential update: T forward without gradients 2 B d^2; f forward on [T(x); y], 2 (2B) d;
    backward: f's weight gradient 2 (2B) d (no input gradient: T(x) and y are data here)."""
    from otmap.core.maps import DeterministicMap

    b, d = 16, 5
    f = torch.nn.Sequential(torch.nn.Linear(d, 1), torch.nn.Flatten(0))
    solver = NeuralOT(DeterministicMap(torch.nn.Linear(d, d)), f, otmap.StrongQuadratic(),
                      k_map=k_map)
    x, y = torch.randn(b, d), torch.randn(b, d)
    map_update = 2 * b * d * d + 2 * b * d + 2 * b * d + 2 * b * d * d
    potential_update = 2 * b * d * d + 2 * (2 * b) * d + 2 * (2 * b) * d
    before = solver.map.net.weight.detach().clone()
    assert speed.count_step_flops(solver, lambda: x, lambda: y) == (
        k_map * map_update + potential_update)
    assert solver.step == 1 and not torch.equal(solver.map.net.weight, before)  # a real step


def test_peak_flops_is_two_n_cubed_over_the_time_of_one_product(monkeypatch):
    """Each n x n product costs 2^-7 s of fake time: 2 n^3 FLOPs per 2^-7 s, whatever the
    grouping (groups of ceil(0.02 / 2^-7) = 3 products, 4 of them in 0.09375 s, after one
    warm-up product)."""
    clock = _fake_clock(monkeypatch, 2.0**-7)
    monkeypatch.setitem(speed.PEAK_SIZES, "cpu", 64)
    monkeypatch.setattr(torch, "mm", lambda a, b: clock.tick())
    rate = speed.peak_flops(torch.device("cpu"), torch.float32, seconds=0.09375)
    assert rate == pytest.approx(2 * 64**3 / 2.0**-7)
    assert clock.ticks == 1 + 4 * 3


def test_peak_flops_in_real_time_for_both_precisions(monkeypatch):
    monkeypatch.setitem(speed.PEAK_SIZES, "cpu", 128)
    for dtype in (torch.float32, torch.bfloat16):
        assert 1e6 < speed.peak_flops(torch.device("cpu"), dtype, seconds=0.05) < 1e13


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_measurement_counts_the_flops_of_the_cpu_step(fp32_toy_config):
    """On a GPU: CUDA peak memory, and the same FLOP count as on the CPU (same shapes)."""
    cuda = dataclasses.replace(fp32_toy_config,
                               train=dataclasses.replace(fp32_toy_config.train, device="cuda"))
    on_gpu, on_cpu = speed.measure_ours(cuda, 2, 1), speed.measure_ours(fp32_toy_config, 1, 0)
    assert on_gpu["memory"] == "cuda_max_allocated" and on_gpu["peak_mib"] > 0
    assert on_gpu["flops_per_step"] == on_cpu["flops_per_step"] > 0
    assert speed.peak_flops(torch.device("cuda"), torch.bfloat16, seconds=0.1) > 1e12


def _with_precision(config, precision):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision))


def test_ours_runs_in_the_precision_asked(fp32_toy_config):
    """bf16 is reported and computed: its first step's losses differ from float32's (which
    are the plain loop's), and float32 stays float32."""
    fp32 = speed.measure_ours(fp32_toy_config, 1, 0)
    bf16 = speed.measure_ours(_with_precision(fp32_toy_config, "bf16"), 1, 0)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert fp32["precision_speedup"] is None and bf16["precision_speedup"] is None  # not timed
    assert bf16["loss_map"] != pytest.approx(fp32["loss_map"], rel=1e-4)
    assert speed.measure_plain(fp32_toy_config, 1, 0)["precision"] == "fp32"


def _check_profile(profile, steps):
    assert profile["steps"] == steps and profile["ms_per_step"] > 0
    ops = profile["ops"]
    assert 0 < len(ops) <= speed.PROFILE_TOP
    assert all(isinstance(op["op"], str) and op["op"] for op in ops)
    assert all(0 < op["share"] <= 1 and op["self_ms"] >= 0 for op in ops)
    assert sum(op["share"] for op in ops) <= 1
    assert [op["share"] for op in ops] == sorted((op["share"] for op in ops), reverse=True)


def test_profile_names_the_top_operators_of_a_linear_step():
    """T(x) = W x + b, f(y) = v.y + c: the steps are taken, and the matrix products are among
    the named operators."""
    from otmap.core.maps import DeterministicMap

    d = 5
    f = torch.nn.Sequential(torch.nn.Linear(d, 1), torch.nn.Flatten(0))
    solver = NeuralOT(DeterministicMap(torch.nn.Linear(d, d)), f, otmap.StrongQuadratic())
    x, y = torch.randn(16, d), torch.randn(16, d)
    profile = speed.profile_steps(solver, lambda: x, lambda: y, 3, top=30)
    assert solver.step == 3
    _check_profile({**profile, "ops": profile["ops"][:speed.PROFILE_TOP]}, 3)
    assert len(profile["ops"]) > speed.PROFILE_TOP
    assert {"aten::addmm", "aten::mm"} & {op["op"] for op in profile["ops"]}


def test_ours_profiles_only_when_asked(fp32_toy_config):
    assert "profile" not in speed.measure_ours(fp32_toy_config, 1, 0)
    _check_profile(speed.measure_ours(fp32_toy_config, 1, 0, 2)["profile"], 2)


def test_precisions_and_profile_steps_are_checked():
    for precisions, match in ((["fp64"], "choose from"), (["fp32", "fp32"], "name each once"),
                              ([], "choose from")):
        with pytest.raises(InputError, match=match):
            speed.speed_bench(["toy"], steps=1, device="cpu", precisions=precisions)
    with pytest.raises(InputError, match="profile steps"):
        speed.speed_bench(["toy"], steps=1, device="cpu", profile=-1)


def test_main_rejects_an_unknown_precision(capsys):
    assert main(["bench", "speed", "--cases", "toy", "--precision", "fp32,fp16"]) == 2
    assert "fp16" in capsys.readouterr().err


def test_main_measures_each_precision_asked_and_prints_profiles(capsys):
    """--precision fp32,bf16: one plain loop per case, otmap's loop in each precision under
    suffixed keys, each ratio against the same plain loop; --profile 2 lists operators in the
    JSON and on stderr."""
    argv = ["bench", "speed", "--cases", "toy", "--steps", "1", "--device", "cpu",
            "--threads", "1", "--precision", "fp32,bf16", "--profile", "2", "--json", "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["precisions"] == ["fp32", "bf16"]
    assert "toy_ratio" not in result and "ours" not in result["toy"]
    plain = result["toy"]["plain"]
    assert plain["precision"] == "fp32"
    assert set(result["peak_gflops"]) == {"fp32", "bf16"}
    for precision in ("fp32", "bf16"):
        ours = result["toy"][f"ours_{precision}"]
        assert ours["precision"] == precision
        assert result[f"toy_ratio_{precision}"] == round(
            ours["steps_per_s"] / plain["steps_per_s"], 3)
        assert result[f"toy_utilisation_{precision}"] == ours["utilisation"]
        _check_profile(ours["profile"], 2)
        assert f"profile of ours, toy {precision} ({precision}, 2 steps" in captured.err
        assert f"toy {precision}: {precision}" in captured.err
    assert ours["profile"]["ops"][0]["op"] in captured.err
