"""Bad options, sample sets and faults for ``otmap.fit`` (otmap.train): each ends in an otmap
error naming the fix, never a raw traceback (issue 11). The property tests feed malformed arrays
and options to ``fit`` and accept only success or an :class:`OTMapError`. The other layers' bad
inputs: tests/{core,data,model,experiments,cli}/test_bad_inputs.py."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import otmap
from otmap.errors import InputError, OTMapError
from otmap.train.config import TrainConfig
from tests.fuzz import ANY, ARRAYS, FUZZ, SAMPLE_SETS, ok_or_otmap_error
from tests.helpers import TINY, sample_x, tiny_fit

pytestmark = pytest.mark.usefixtures("torch_single_thread")

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished two-step run folder (copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    tiny_fit(run_dir=run_dir)
    return run_dir


# ----------------------------------------------------------------------------- config values

@pytest.mark.parametrize("kwargs, fragment", [
    ({"lr_map": "fast"}, "train.lr_map must be positive (a finite number such as 1e-3), or "
                         "None for the default, got 'fast'"),
    ({"lr_potential": 0}, "train.lr_potential must be positive"),
    ({"lr_map": float("inf")}, "train.lr_map must be positive"),
    ({"lr_map": True}, "train.lr_map must be positive"),
    ({"weight_decay": "x"}, "train.weight_decay must be a finite number >= 0"),
    ({"weight_decay": -1.0}, "train.weight_decay must be a finite number >= 0"),
    ({"gradient_penalty": "x"}, "train.gradient_penalty must be a finite number >= 0"),
    ({"gradient_optimality": [1]}, "train.gradient_optimality must be a finite number >= 0"),
    ({"expectile": -1}, "train.expectile must be a finite number >= 0"),
    ({"expectile_tau": 0.2}, "train.expectile_tau must be a number in (0.5, 1) such as 0.99"),
    ({"grad_clip": "x"}, "train.grad_clip must be a positive finite number such as 10, or None"),
    ({"grad_clip": 0}, "train.grad_clip must be a positive"),
    ({"ema_decay": "x"}, "train.ema_decay must be a number in (0, 1)"),
    ({"betas": "ab"}, "train.betas must be two numbers in [0, 1)"),
    ({"betas": [0.5]}, "train.betas must be two numbers in [0, 1)"),
    ({"betas": [1.5, 0.9]}, "train.betas must be two numbers in [0, 1)"),
    ({"seed": "x"}, "train.seed must be an integer"),
    ({"seed": 2**70}, "train.seed must be an integer in [0, 2**63)"),
    ({"compile": "yes"}, "train.compile must be true or false"),
    ({"potential_all_samples": 1}, "train.potential_all_samples must be true or false"),
    ({"device": "gpu0"}, "train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"device": 3}, "train.device must be"),
])
def test_bad_option_values_name_the_range(kwargs, fragment):
    with pytest.raises(InputError) as err:
        TrainConfig(**kwargs)
    assert fragment in str(err.value)


def test_numeric_strings_are_numbers():
    # YAML 1.1 reads 1e-3 (no dot) as a string
    config = TrainConfig(lr_map="1e-3", grad_clip="10", betas=["0.5", 0.9])
    assert config.lr_map == 1e-3 and config.grad_clip == 10.0 and config.betas == (0.5, 0.9)


# --------------------------------------------------------- odd values the property tests found

def test_constant_target():
    with pytest.raises(InputError, match="all 4096 samples drawn are the same point"):
        tiny_fit(target=torch.zeros(10, 2))


def test_images_too_small_for_the_default_potential():
    with pytest.raises(InputError) as err:
        tiny_fit(source=torch.randn(20, 1, 2, 2), target=torch.randn(20, 1, 2, 2), map=None,
             potential=None)
    assert "too small for the potential ResNetPotential" in str(err.value)
    assert "potential={'channels': [64]}" in str(err.value)


# ----------------------------------------------------------------------------- faults

# needs atomic_save to wrap write failures (other engineer)
@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0: "
                 "PytorchStreamWriter failed writing file data/0: file write failed"),
    OSError(errno.ENOSPC, "No space left on device"),
], ids=["torch-runtime-error", "enospc"])
def test_full_disk_while_writing_a_checkpoint(tmp_path, monkeypatch, tiny_run, error):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    checkpoints = run_dir / "checkpoints"
    before = (checkpoints / "last.pt").read_bytes()
    files = sorted(p.name for p in checkpoints.iterdir())
    model = tmp_path / "model.pt"
    otmap.load(run_dir).save(model)
    saved = model.read_bytes()

    def full_disk(obj, f, *args, **kwargs) -> None:
        """``torch.save`` on a full disk: part of the file is written, then the write fails."""
        f.write(b"PK\x03\x04 partial")
        raise error

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OTMapError) as saving:
        otmap.load(run_dir).save(model)
    with pytest.raises(OTMapError) as training:
        tiny_fit(run_dir=run_dir, resume=True, steps=4)
    assert str(error) in str(saving.value) and str(error) in str(training.value)
    assert model.read_bytes() == saved
    assert (checkpoints / "last.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert sorted(p.name for p in checkpoints.iterdir()) == files  # no temporary file left


def _fault_source(n: int) -> torch.Tensor:
    return torch.randn(n, 2)


def _fault_target(n: int) -> torch.Tensor:
    return 0.5 * torch.randn(n, 2) + 2


_FAULT_RUN = dict(TINY, steps=8, checkpoint_every=2, log_every=8, eval_every=8)


def _run_until_killed(run_dir: Path) -> None:
    """In a forked child: the run whose source sampler blocks once the first checkpoint is on
    disk, for the parent to kill; the child never returns into pytest."""
    checkpoint = run_dir / "checkpoints" / "last.pt"

    def source(n: int) -> torch.Tensor:
        if checkpoint.exists():
            time.sleep(600)
        return _fault_source(n)

    try:
        otmap.fit(source, _fault_target, run_dir=run_dir, **_FAULT_RUN)
    finally:
        os._exit(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill_9_then_resume_is_bit_identical(tmp_path):
    run_dir = tmp_path / "killed"
    pid = os.fork()  # a child with torch already imported: seconds faster than a new python
    if pid == 0:
        _run_until_killed(run_dir)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "last.pt").exists():
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the run ended before it was killed"
            assert time.monotonic() < deadline, "the run wrote no checkpoint"
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert otmap.load(run_dir).training["step"] < _FAULT_RUN["steps"]
    resumed = otmap.fit(_fault_source, _fault_target, run_dir=run_dir, resume=True,
                        **_FAULT_RUN)
    full = otmap.fit(_fault_source, _fault_target, **_FAULT_RUN)
    x = sample_x(50)
    assert torch.equal(resumed.transport(x), full.transport(x))


# ----------------------------------------------------------------------------- properties

_SAMPLES = st.one_of(
    SAMPLE_SETS,
    ARRAYS,
    ARRAYS.map(torch.as_tensor),
    ARRAYS.map(np.ndarray.tolist),
    ANY,
)
_TRAIN_KEYS = ["steps", "batch_size", "k_map", "num_samples", "potential_all_samples", "lr_map",
               "lr_potential", "betas", "weight_decay", "lr_schedule", "ema_decay", "grad_clip",
               "gradient_optimality", "gradient_penalty", "expectile", "expectile_tau", "seed",
               "device", "log_every", "eval_every", "eval_samples", "precision", "channels_last",
               "stepz"]
_COSTS = st.one_of(
    ANY,
    st.fixed_dictionaries(
        {"name": st.sampled_from(["StrongQuadratic", "InnerProduct", "WeakQuadratic",
                                  "WeakKernel"])},
        optional={"gamma": ANY, "reduction": ANY, "scale": ANY, "kernel": ANY,
                  "alpha": ANY, "sigma": ANY}),
)


@FUZZ
@given(samples=_SAMPLES, as_target=st.booleans())
def test_fit_takes_any_array_or_raises_otmap_error(samples, as_target):
    shape = tuple(getattr(samples, "shape", ()))[1:]
    images = len(shape) == 3  # then otmap's default conv networks, not TINY's MLPs
    good = torch.randn(40, *shape) if len(shape) in (1, 3) and 0 not in shape else sample_x(40)
    source, target = (good, samples) if as_target else (samples, good)
    nets = {"map": None, "potential": None} if images else {}
    ok_or_otmap_error(otmap.fit, source, target, **{**TINY, "steps": 1, **nets})


@FUZZ
@given(options=st.dictionaries(st.sampled_from(_TRAIN_KEYS), ANY, max_size=3).filter(
    lambda options: options.get("steps", 1) is not None), cost=_COSTS)  # None: 3000 steps
def test_fit_takes_any_options_or_raises_otmap_error(options, cost):
    ok_or_otmap_error(otmap.fit, sample_x(40), sample_x(40) + 1, cost=cost,
                       **{**TINY, "steps": 1, **options})
