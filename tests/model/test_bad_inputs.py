"""Bad input to a trained result (otmap.model): non-finite points to transport, and checkpoint
files that are missing, foreign, truncated or damaged: each raises an otmap error whose message
names the fix."""

from __future__ import annotations

import random

import pytest
import torch

import otmap
from otmap.errors import CheckpointError, InputError
from tests.helpers import sample_x, tiny_fit

pytestmark = pytest.mark.usefixtures("torch_single_thread")

@pytest.fixture(scope="module")
def tiny_result() -> otmap.TransportResult:
    return tiny_fit()


# ----------------------------------------------------------------------------- transport

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_transport_refuses_non_finite_inputs(tiny_result, bad):
    x = sample_x(6)
    x[1, 0] = bad
    x[4] = bad
    for apply in (tiny_result.transport, tiny_result.inverse):
        with pytest.raises(InputError) as err:
            apply(x)
        message = str(err.value)
        assert "NaN or Inf values in 2 of 6 rows" in message and "x[keep]" in message
    assert torch.isfinite(tiny_result.transport(sample_x(6))).all()


# ----------------------------------------------------------------------------- checkpoints

def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        otmap.load(tmp_path / "nope.pt")


def test_run_folder_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError) as err:
        otmap.load(tmp_path / "run")
    assert "checkpoints/last.pt" in str(err.value)
    assert "run_dir" in str(err.value)


@pytest.mark.parametrize("obj", [{"a": 1}, [1, 2, 3], torch.zeros(3)])
def test_foreign_torch_file(tmp_path, obj):
    path = tmp_path / "foreign.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as err:
        otmap.load(path)
    assert "not an otmap checkpoint" in str(err.value)
    assert "result.save" in str(err.value)


def test_incomplete_and_newer_checkpoints(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({"format": "otmap-checkpoint", "version": 1}, path)
    with pytest.raises(CheckpointError, match="incomplete or damaged"):
        otmap.load(path)
    torch.save({"format": "otmap-checkpoint", "version": 99}, path)
    with pytest.raises(CheckpointError, match="upgrade otmap"):
        otmap.load(path)


@pytest.fixture(scope="module")
def good_checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tiny_fit().save(tmp_path_factory.mktemp("good") / "good.pt")
    return path.read_bytes()


@pytest.mark.parametrize("cut", ["half", "head", "tail"])
def test_truncated_checkpoint(tmp_path, good_checkpoint_bytes, cut):
    data = good_checkpoint_bytes
    data = {"half": data[: len(data) // 2], "head": data[:100], "tail": data[:-30]}[cut]
    path = tmp_path / "truncated.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="corrupted"):
        otmap.load(path)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_random_bytes_raise_checkpoint_error(tmp_path, seed):
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(seed).randbytes(1000))
    with pytest.raises(CheckpointError):
        otmap.load(path)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes_are_reported_as_corrupted_not_as_trusted_pickle(tmp_path, seed):
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(seed).randbytes(1000))
    with pytest.raises(CheckpointError) as err:
        otmap.load(path)
    assert "corrupted" in str(err.value)
    assert "trusted=True" not in str(err.value)


def test_damaged_checkpoint_is_reported_as_corrupted(tmp_path, good_checkpoint_bytes):
    data = good_checkpoint_bytes
    path = tmp_path / "damaged.pt"
    path.write_bytes(data[:500] + bytes(200) + data[700:])
    with pytest.raises(CheckpointError) as err:
        otmap.load(path)
    assert "trusted=True" not in str(err.value)


@pytest.mark.parametrize("content", [b"hello world", random.Random(2).randbytes(1000)],
                         ids=["text", "random-seed-2"])
def test_garbage_always_raises_checkpoint_error(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        otmap.load(path)
