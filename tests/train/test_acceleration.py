"""Speed options: precision, channels-last layout, compile, and the data pipeline's pieces."""

from __future__ import annotations

import pytest
import torch

import otmap
from otmap.data import TensorSampler
from otmap.data.images import load_digits
from otmap.data.samplers import on_device
from otmap.data.specs import DegradedSampler
from otmap.errors import InputError
from otmap.metrics import l2_uvp
from otmap.train import acceleration
from otmap.train.fit import describe

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
IMAGE_NETS = {"map": {"name": "UNet", "in_channels": 1, "out_channels": 1, "channels": [8, 16]},
              "potential": {"channels": [8, 16]}}


def _tiny_solver(d: int = 3) -> otmap.NeuralOT:
    from otmap.core.maps import DeterministicMap

    f = torch.nn.Sequential(torch.nn.Linear(d, 1), torch.nn.Flatten(0))
    return otmap.NeuralOT(DeterministicMap(torch.nn.Linear(d, d)), f, otmap.StrongQuadratic(),
                          k_map=1)


def _no_measuring(*args, **kwargs):
    raise AssertionError("auto measured on a device without native bf16")


def test_explicit_precisions_and_bad_options():
    solver, x = _tiny_solver(), torch.randn(8, 3)
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        choice = acceleration.resolve_precision(name, solver, x, x, batch_size=4)
        assert (choice.precision, choice.dtype, choice.seconds_per_step) == (name, dtype, None)
    with pytest.raises(InputError, match="fp16 is not offered"):
        acceleration.resolve_precision("fp16", solver, x, x, batch_size=4)
    with pytest.raises(InputError, match="channels_last"):
        acceleration.use_channels_last("yes", images=True)
    assert not acceleration.use_channels_last("auto", images=False)


@pytest.mark.parametrize(("torch_checks", "flags", "native"), [
    ((True, False), set(), True),           # AMX tiles (torch's check)
    ((False, True), set(), True),           # AVX512-BF16 (torch's check)
    ((False, False), {"avx512_bf16"}, True),  # only /proc/cpuinfo says so
    ((False, False), {"amx_bf16", "avx512f"}, True),
    ((False, False), {"avx512f", "avx2"}, False),
])
def test_native_bf16_on_cpus(monkeypatch, torch_checks, flags, native):
    for name, value in zip(("_is_amx_tile_supported", "_is_avx512_bf16_supported"), torch_checks):
        monkeypatch.setattr(torch.cpu, name, lambda value=value: value, raising=False)
    monkeypatch.setattr(acceleration, "_cpu_flags", lambda: frozenset(flags))
    assert acceleration.native_bf16(CPU) is native
    assert not acceleration.native_bf16(torch.device("meta"))
    if not torch.cuda.is_available():
        assert not acceleration.native_bf16(CUDA)


@pytest.mark.parametrize(("fp32", "bf16", "chosen"), [
    ([1.0, 1.0], [0.5, 0.5], "bf16"),       # 2x faster in both paired timings
    ([1.1, 2.2], [1.0, 2.0], "bf16"),       # exactly the margin in both
    ([1.0, 1.0], [0.5, 0.95], "fp32"),      # faster by the margin in one timing only
    ([1.0], [0.95], "fp32"),                # faster, but by less than the margin
    ([1.0, 1.0], [1.0, 1.0], "fp32"),
    ([1.0], [1.3], "fp32"),                 # slower
])
def test_auto_keeps_bf16_only_when_faster_by_the_margin(monkeypatch, fp32, bf16, chosen):
    assert acceleration.BF16_MARGIN == pytest.approx(1.10)
    monkeypatch.setattr(acceleration, "native_bf16", lambda device: True)
    seen = []

    def timings(solver, x, y):
        seen.append((x.shape, y.shape))
        return {"fp32": fp32, "bf16": bf16}

    monkeypatch.setattr(acceleration, "time_precisions", timings)
    solver = _tiny_solver()
    choice = acceleration.resolve_precision("auto", solver, torch.randn(5, 3),
                                            torch.randn(7, 3), batch_size=16)
    assert seen == [((16, 3), (16, 3))]  # the run's batch shapes, rows cycled
    assert choice.precision == chosen
    assert choice.dtype is (torch.bfloat16 if chosen == "bf16" else None)
    assert choice.seconds_per_step == {"fp32": min(fp32), "bf16": min(bf16)}
    speedup = min(f / b for f, b in zip(fp32, bf16))
    assert choice.speedup == pytest.approx(speedup)
    assert f"auto: bf16 at least {speedup:.2f}x as fast as float32" in choice.describe()
    assert f"vs {min(fp32):.3g} s per step" in choice.describe()


def test_auto_without_native_bf16_runs_float32_without_measuring(monkeypatch):
    monkeypatch.setattr(acceleration, "native_bf16", lambda device: False)
    monkeypatch.setattr(acceleration, "time_precisions", _no_measuring)
    x = torch.randn(8, 3)
    choice = acceleration.resolve_precision("auto", _tiny_solver(), x, x, batch_size=4)
    assert (choice.precision, choice.dtype, choice.seconds_per_step) == ("fp32", None, None)
    assert choice.describe() == "float32 (auto: no native bf16 here)"


def test_auto_does_not_measure_a_short_run(monkeypatch):
    monkeypatch.setattr(acceleration, "native_bf16", lambda device: True)
    monkeypatch.setattr(acceleration, "time_precisions", _no_measuring)
    x = torch.randn(256, 2)
    setup = otmap.prepare(x, x + 1, steps=acceleration.MEASURED_STEPS - 1, device="cpu",
                          map={"hidden": [8]}, potential={"hidden": [8]})
    assert (setup.precision.precision, setup.precision.seconds_per_step) == ("fp32", None)
    assert "under 500 steps" in describe(setup)


def test_timing_leaves_the_solver_and_the_random_streams_as_they_were():
    from otmap.core.maps import StochasticMap

    torch.manual_seed(0)
    f = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0))
    solver = otmap.NeuralOT(StochasticMap(torch.nn.Linear(4, 3), noise_dim=1), f,
                            otmap.StrongQuadratic(), k_map=2)  # its steps draw noise
    state = {k: v.clone() for k, v in solver.state_dict().items()}
    x, y = torch.randn(16, 3), torch.randn(16, 3) + 1
    rng = torch.get_rng_state()
    timed = acceleration.time_precisions(solver, x, y, seconds=0.02)
    assert set(timed) == {"fp32", "bf16"} and len(timed["fp32"]) == len(timed["bf16"]) >= 1
    assert all(0 < s < 1 for values in timed.values() for s in values)
    assert solver.step == 0 and solver.autocast_dtype is None
    assert not solver.map_optimizer.state and not solver.potential_optimizer.state
    assert all(torch.equal(v, state[k]) for k, v in solver.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("faster", [True, False])
def test_the_decision_shows_in_the_description_and_the_record(monkeypatch, faster):
    monkeypatch.setattr(acceleration, "native_bf16", lambda device: True)
    timings = {"fp32": 0.004, "bf16": 0.002 if faster else 0.0039}
    monkeypatch.setattr(acceleration, "time_precisions",
                        lambda solver, x, y: {k: [v] for k, v in timings.items()})
    x = torch.randn(256, 2)
    setup = otmap.prepare(x, x + 1, steps=acceleration.MEASURED_STEPS, device="cpu",
                          precision="auto", map={"hidden": [8]}, potential={"hidden": [8]})
    chosen = "bf16" if faster else "fp32"
    assert setup.precision.seconds_per_step == timings
    assert setup.solver.autocast_dtype is (torch.bfloat16 if faster else None)
    assert setup.config.precision == setup.record["train"]["precision"] == chosen
    line = describe(setup)
    assert line.startswith("cpu, bf16 autocast (auto" if faster else "cpu, float32 (auto")
    assert f"{1e3 * timings['bf16']:.3g} ms vs 4 ms per step" in line  # bf16's, float32's


def test_bf16_autocast_still_learns_the_gaussian_map(gaussian2d, small_fit_kwargs):
    x = gaussian2d.source(2000)
    result = otmap.fit(x, gaussian2d.target(2000), steps=300, seed=0, precision="bf16",
                       device="cpu", **small_fit_kwargs)
    assert next(result.map.parameters()).dtype == torch.float32  # weights stay float32
    test = gaussian2d.source(2000)
    assert l2_uvp(result.transport(test), gaussian2d.true_map(test),
                  gaussian2d.target(4000)) < 5.0  # percent


def _digits(n: int = 256) -> torch.Tensor:
    return load_digits(size=8)[0][:n]


def test_channels_last_changes_the_layout_not_the_training():
    x = _digits()
    y = x.flip(3)
    runs = {}
    for layout in (True, False):
        runs[layout] = otmap.fit(x, y, steps=3, batch_size=16, k_map=1, seed=0, progress=False,
                                 eval_samples=32, device="cpu", channels_last=layout,
                                 precision="fp32", **IMAGE_NETS)
    conv = next(m for m in runs[True].map.modules()
                if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    fresh = x[:16]
    assert torch.allclose(runs[True].transport(fresh), runs[False].transport(fresh), atol=1e-4)


def test_on_device_copies_the_data_behind_wrapping_samplers():
    base = TensorSampler(torch.randn(10, 3, dtype=torch.float32))
    wrapped = DegradedSampler(base, lambda x: x + 1)
    moved = on_device(wrapped, torch.device("meta"))
    assert isinstance(moved, DegradedSampler) and moved.base.data.device.type == "meta"
    assert base.data.device.type == "cpu" and wrapped.base is base  # the caller's: untouched
    small = TensorSampler(torch.randn(10, 3))
    assert on_device(small, torch.device("meta"), max_bytes=8) is small  # too large: stays


@pytest.mark.slow
def test_compiled_networks_train_and_save_plain_state_dicts(gaussian2d, small_fit_kwargs,
                                                            tmp_path):
    x = gaussian2d.source(1000)
    result = otmap.fit(x, gaussian2d.target(1000), steps=20, seed=0, compile=True,
                       device="cpu", run_dir=tmp_path / "run", **small_fit_kwargs)
    assert not any("_orig_mod" in k for k in result.map.state_dict())
    loaded = otmap.load(tmp_path / "run")
    assert torch.allclose(loaded.transport(x[:64]), result.transport(x[:64]), atol=1e-5)


def test_channels_last_auto_leaves_user_modules_alone():
    assert acceleration.use_channels_last("auto", images=True)
    assert not acceleration.use_channels_last("auto", images=True, custom_modules=True)
    assert acceleration.use_channels_last(True, images=True, custom_modules=True)


def test_a_batch_normalised_potential_is_refused():
    from otmap.core.maps import DeterministicMap

    f = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8),
                            torch.nn.Linear(8, 1), torch.nn.Flatten(0))
    with pytest.raises(InputError, match="batch normalisation"):
        otmap.NeuralOT(DeterministicMap(torch.nn.Linear(2, 2)), f, otmap.StrongQuadratic())


@pytest.mark.parametrize("command", [["bench", "gaussian", "--dim", "2"],
                                     ["sweep", "not-toy-moons-square"],
                                     ["bench", "speed"]])
def test_single_process_commands_refuse_torchrun(monkeypatch, capsys, command):
    from otmap.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(command) == 2
    assert "only `otmap train` runs under torchrun" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_auto_precision_is_measured_where_bf16_is_native(gaussian2d, small_fit_kwargs):
    x, y = gaussian2d.source(1000), gaussian2d.target(1000)
    setup = otmap.prepare(x, y, steps=acceleration.MEASURED_STEPS, device="cuda",
                          precision="auto",
                          map=small_fit_kwargs["map"], potential=small_fit_kwargs["potential"])
    choice = setup.precision
    assert (choice.seconds_per_step is not None) == acceleration.native_bf16(CUDA)
    if choice.seconds_per_step is not None:
        assert choice.speedup is not None
        assert choice.precision == ("bf16" if choice.speedup >= acceleration.BF16_MARGIN
                                    else "fp32")
    assert setup.record["train"]["precision"] == choice.precision


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_fit_trains_in_each_precision(gaussian2d, small_fit_kwargs, precision):
    x = gaussian2d.source(1000)
    result = otmap.fit(x, gaussian2d.target(1000), steps=20, seed=0, device="cuda",
                       precision=precision, **small_fit_kwargs)
    assert result.device.type == "cuda"
    out = result.transport(x[:64].cuda())
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
