"""Bad input to ``otmap.fit``: every mistake raises an otmap error whose message names the fix
(samples, options, divergence, run folders). Bad checkpoint files and transport inputs:
tests/model/test_bad_inputs.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import otmap
from otmap.errors import CheckpointError, InputError, OTMapError, TrainingDivergedError

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = {"map": {"hidden": [8]}, "potential": {"hidden": [8]}, "batch_size": 16, "k_map": 2,
        "progress": False, "eval_samples": 32, "lr_schedule": None}


def _x(n: int = 64, d: int = 2) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(n + d))


def _fit(source=None, target=None, **kwargs):
    source = _x() if source is None else source
    target = _x(80) + 1 if target is None else target
    return otmap.fit(source, target, **{"steps": 2, **TINY, **kwargs})


def test_error_hierarchy():
    assert issubclass(InputError, ValueError) and issubclass(InputError, OTMapError)
    assert issubclass(TrainingDivergedError, FloatingPointError)
    assert issubclass(CheckpointError, OTMapError)


# ----------------------------------------------------------------------------- samples

def test_mismatched_dimensions_need_an_embedding():
    with pytest.raises(InputError) as err:
        _fit(_x(64, 2), _x(64, 3))
    message = str(err.value)
    assert "(2,)" in message and "(3,)" in message
    assert "embedding=" in message


def test_mismatched_dimensions_with_an_embedding_work():
    embed = torch.nn.Linear(2, 3, bias=False)
    result = _fit(_x(64, 2), _x(64, 3), embedding=embed)
    assert result.transport(_x(5, 2)).shape == (5, 3)


@pytest.mark.parametrize("role", ["source", "target"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples(role, bad):
    data = _x(50)
    data[3, 1] = bad
    data[7, 0] = bad
    kwargs = {role: data}
    with pytest.raises(InputError) as err:
        _fit(**kwargs)
    message = str(err.value)
    assert role in message
    assert "NaN/Inf" in message and "[3, 7]" in message
    assert "drop or impute" in message


def test_non_finite_samples_from_a_callable():
    def sampler(n):
        x = torch.randn(n, 2)
        x[0, 0] = float("nan")
        return x

    with pytest.raises(InputError, match="NaN/Inf"):
        _fit(target=sampler)


@pytest.mark.parametrize("data, fragment", [
    (torch.empty(0, 2), "0 sample"),
    (torch.randn(1, 2), "at least 2"),
    (torch.randn(10), r"x\[:, None\]"),
    (torch.randn(()), r"\[n, d\]"),
    (torch.randint(0, 5, (20, 2)), r"x\.float\(\)"),
    (torch.ones(20, 2, dtype=torch.bool), r"x\.float\(\)"),
    (torch.empty(20, 0), "empty feature dimension"),
    ([[1.0, 2.0], [3.0, 4.0]], "torch.Tensor or numpy array"),
])
def test_bad_sample_sets(data, fragment):
    with pytest.raises(InputError, match=fragment):
        _fit(source=data)


def test_callable_returning_wrong_count():
    with pytest.raises(InputError, match="exactly n samples"):
        _fit(source=lambda n: torch.randn(n + 1, 2))


# ----------------------------------------------------------------------------- options

def test_unknown_fit_option_suggests_the_right_key():
    with pytest.raises(InputError) as err:
        _fit(stepz=3)
    assert "unknown key 'stepz'" in str(err.value)
    assert "did you mean 'steps'?" in str(err.value)


def test_unknown_fit_option_without_close_match_lists_keys():
    with pytest.raises(InputError, match="valid keys:.*batch_size"):
        _fit(qqqq=1)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"steps": 0}, "train.steps must be a positive integer"),
    ({"batch_size": 1}, "batch_size must be at least 2"),
    ({"log_every": 2.5}, "train.log_every must be a positive integer"),
    ({"lr_map": 0.0}, "lr_map must be positive"),
    ({"ema_decay": 1.5}, "ema_decay"),
    ({"lr_schedule": {"name": "sawtooth"}}, "unknown schedule"),
])
def test_bad_option_values(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        _fit(**kwargs)


def test_unknown_cost_name():
    with pytest.raises(InputError) as err:
        _fit(cost="quadratik")
    message = str(err.value)
    assert "unknown cost 'quadratik'" in message
    assert "StrongQuadratic" in message and "callable" in message


def test_cost_with_wrong_output_shape():
    with pytest.raises(InputError, match="one value per pair"):
        _fit(cost=lambda x, y: (x - y) ** 2)


def test_unknown_network_name():
    with pytest.raises(InputError, match="unknown network 'ResNet'"):
        _fit(map={"name": "ResNet"})


def test_resume_needs_a_run_folder():
    with pytest.raises(InputError, match="run_dir"):
        _fit(resume=True)


# ----------------------------------------------------------------------------- divergence

class NanAfter:
    """Quadratic cost c(x, y) = 1/2 |x - y|^2 that returns NaN from call ``calls + 1`` on.

    Module level, so the checkpoint can pickle it. When it turns, it records the bytes of the
    run's checkpoint as they are at that moment."""

    def __init__(self, calls: int, watch: Path | None = None) -> None:
        self.calls, self.watch = calls, watch
        self.count = 0
        self.snapshot: bytes | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.count += 1
        c = 0.5 * ((x - y) ** 2).sum(1)
        if self.count <= self.calls:
            return c
        if self.snapshot is None and self.watch is not None:
            self.snapshot = self.watch.read_bytes()
        return c * float("nan")


def test_divergence_raises_and_keeps_the_last_good_checkpoint(tmp_path):
    common = dict(log_every=2, eval_every=2, checkpoint_every=4, seed=4)
    ckpt = tmp_path / "bad" / "checkpoints" / "last.pt"
    # k_map=2 cost calls per step: NaN from step 7 on, first seen at step 8, a checkpoint step
    cost = NanAfter(calls=12, watch=ckpt)
    with pytest.raises(TrainingDivergedError) as err:
        _fit(cost=cost, steps=20, run_dir=tmp_path / "bad", **common)
    message = str(err.value)
    assert "step 8" in message
    assert "checkpoint of step 4" in message and str(ckpt) in message
    assert "grad_clip" in message and "lr_map" in message

    assert cost.snapshot is not None and ckpt.read_bytes() == cost.snapshot
    kept = otmap.load(ckpt, trusted=True)  # the checkpoint pickles the NanAfter cost
    assert kept.training["step"] == 4
    x = _x(30)
    assert torch.isfinite(kept.transport(x)).all()
    # and it is the step-4 state of the same run without NaNs
    good = _fit(cost=NanAfter(calls=10**9), steps=4, run_dir=tmp_path / "good", **common)
    assert torch.equal(kept.transport(x), good.transport(x))
    # the metrics log stops before the divergence
    lines = (tmp_path / "bad" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all(math.isfinite(r["loss_map"]) for r in rows)


def test_divergence_before_any_checkpoint_says_nothing_was_saved(tmp_path):
    with pytest.raises(TrainingDivergedError, match="nothing was saved"):
        _fit(cost=NanAfter(calls=0), steps=10, log_every=1, run_dir=tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()


def test_divergence_without_a_run_folder():
    with pytest.raises(TrainingDivergedError, match="diverged"):
        _fit(cost=NanAfter(calls=3), steps=10, log_every=1)


def test_checkpoint_every_is_honoured_between_log_steps(tmp_path):
    with pytest.raises(TrainingDivergedError):
        # NaN from step 5 on (k_map=2): checkpoints at steps 2 and 4 were asked for
        _fit(cost=NanAfter(calls=8), steps=20, log_every=5, checkpoint_every=2,
             run_dir=tmp_path / "r")
    assert otmap.load(tmp_path / "r", trusted=True).training["step"] == 4


# ----------------------------------------------------------------------------- run folders

def test_resume_in_folder_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match="checkpoints/last.pt"):
        _fit(run_dir=tmp_path / "run", resume=True)


def test_new_run_in_a_used_folder(tmp_path):
    _fit(run_dir=tmp_path / "run")
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(InputError) as err:
        _fit(run_dir=tmp_path / "run")
    message = str(err.value)
    assert "already holds a run" in message
    assert "resume=True" in message and "another run folder" in message
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


def test_lambda_cost_with_a_run_folder(tmp_path):
    _fit(cost=lambda x, y: 0.5 * ((x - y) ** 2).sum(1), steps=2, run_dir=tmp_path / "r")
    assert otmap.load(tmp_path / "r", trusted=True).transport(_x(3)).shape == (3, 2)
