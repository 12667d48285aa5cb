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

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
IMAGE_NETS = {"map": {"name": "UNet", "in_channels": 1, "out_channels": 1, "channels": [8, 16]},
              "potential": {"channels": [8, 16]}}


@pytest.mark.parametrize("amx", [True, False])
def test_precision_choices(monkeypatch, amx):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert acceleration.autocast_dtype("fp32", CPU) is None
    assert acceleration.autocast_dtype("bf16", CPU) is torch.bfloat16
    assert acceleration.autocast_dtype("auto", CPU) is (torch.bfloat16 if amx else None)
    assert acceleration.autocast_dtype("auto", torch.device("meta")) is None
    if not torch.cuda.is_available():
        assert acceleration.autocast_dtype("auto", CUDA) is None
    with pytest.raises(InputError, match="fp16 is not offered"):
        acceleration.autocast_dtype("fp16", CPU)
    with pytest.raises(InputError, match="channels_last"):
        acceleration.use_channels_last("yes", images=True)
    assert not acceleration.use_channels_last("auto", images=False)


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
