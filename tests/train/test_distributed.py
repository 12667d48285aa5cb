"""Multi-process training (gloo on CPU): replicas stay identical, two processes average
gradients like one process on the joined batch, and checkpoints cross process counts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import otmap
from otmap.core.costs import StrongQuadratic
from otmap.core.maps import DeterministicMap
from otmap.train import distributed

SMALL = {"map": {"hidden": [32, 32]}, "potential": {"hidden": [32, 32]}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, job: str, folder: str) -> None:
    """One process of a gloo group: sets torchrun's variables and runs ``job``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.setup("cpu")
    globals()[job](rank, Path(folder))
    distributed.shutdown()


def _spawn(job: str, folder: Path, world: int = 2, worker=_worker) -> None:
    mp.spawn(worker, args=(world, _free_port(), job, str(folder)), nprocs=world, join=True)


def _script_worker(rank: int, world: int, port: int, job: str, folder: str) -> None:
    """A process as torchrun starts a user's script: its variables set, no process group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    globals()[job](rank, Path(folder))


def _fit_then_report_the_group(rank: int, folder: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    otmap.fit(x, x + 1.0, steps=2, batch_size=16, eval_every=2, eval_samples=32,
              progress=False, device="cpu", **SMALL)
    (folder / f"rank{rank}.json").write_text(json.dumps(
        {"initialized_after_fit": torch.distributed.is_initialized()}))


def _stochastic_fit(rank: int, folder: Path) -> None:
    """A stochastic map with the weak kernel cost and the gradient penalty."""
    torch.manual_seed(123)  # the data differ from the training streams, equal on all ranks
    x, y = torch.randn(512, 2), torch.randn(512, 2) * 0.5 + 2.0
    result = otmap.fit(x, y, cost={"name": "WeakKernel", "gamma": 0.5}, steps=6,
                       batch_size=32, k_map=2, num_samples=3, gradient_penalty=0.1,
                       checkpoint_every=3, log_every=3,
                       eval_every=3, eval_samples=64, progress=False, device="cpu",
                       run_dir=folder / "run", **SMALL)
    torch.save({"map": result.map.state_dict(), "training": result.training},
               folder / f"rank{rank}.pt")


def _exact_resume(rank: int, folder: Path) -> None:
    """6 steps straight (A), and 3 steps then a resume to 6 (B), in the same 2 processes."""
    torch.manual_seed(321)
    x, y = torch.randn(512, 2), torch.randn(512, 2) + 1.0
    common = dict(batch_size=16, k_map=2, checkpoint_every=3, log_every=3, eval_every=3,
                  eval_samples=64, progress=False, device="cpu", lr_schedule=None, **SMALL)
    a = otmap.fit(x, y, steps=6, run_dir=folder / "A", **common)
    otmap.fit(x, y, steps=3, run_dir=folder / "B", **common)
    b = otmap.fit(x, y, steps=6, run_dir=folder / "B", resume=True, **common)
    torch.save({"a": a.training, "b": b.training}, folder / f"resume{rank}.pt")


def _fixed_batches(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s part of one fixed batch of 16 (all of it for one process)."""
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g) + 1.0
    part = slice(rank * 16 // world, (rank + 1) * 16 // world)
    return x[part], y[part]


def _fixed_solver(gradient_optimality: float = 0.0) -> otmap.NeuralOT:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.Softplus(), nn.Linear(16, 3))
    f = nn.Sequential(nn.Linear(3, 16), nn.Softplus(), nn.Linear(16, 1), nn.Flatten(0))
    return otmap.NeuralOT(DeterministicMap(net), f, StrongQuadratic(), k_map=2,
                          gradient_optimality=gradient_optimality)


def _train_fixed(rank: int, world: int, gradient_optimality: float = 0.0) -> dict:
    solver = _fixed_solver(gradient_optimality)
    if world > 1:
        solver.distribute(lambda m: distributed.wrap(m, torch.device("cpu")))
    x, y = _fixed_batches(rank, world)
    for _ in range(3):
        solver.train_step(lambda: x, lambda: y)
    return solver.training_state()


def _fixed_job(rank: int, folder: Path) -> None:
    torch.save(_train_fixed(rank, 2), folder / f"fixed{rank}.pt")
    # OTM's gradient-optimality term (double backward through the wrapped potential)
    torch.save(_train_fixed(rank, 2, gradient_optimality=0.5), folder / f"go{rank}.pt")


def _assert_same_state(a: dict, b: dict, atol: float = 0.0) -> None:
    for name in ("map", "potential"):
        for key, value in a[name].items():
            assert torch.allclose(value, b[name][key], atol=atol, rtol=0), (name, key)


@pytest.mark.usefixtures("torch_single_thread")
def test_two_processes_average_gradients_like_one_process_on_the_joined_batch(tmp_path):
    _spawn("_fixed_job", tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"fixed{r}.pt") for r in (0, 1))
    _assert_same_state(rank0, rank1)
    _assert_same_state(*(torch.load(tmp_path / f"go{r}.pt") for r in (0, 1)))
    single = _train_fixed(0, 1)  # the whole batch of 16 in one process
    _assert_same_state(rank0, single, atol=1e-5)
    moved = any(not torch.equal(v, _fixed_solver().training_state()["map"][k])
                for k, v in single["map"].items())
    assert moved


@pytest.mark.usefixtures("torch_single_thread")
def test_two_process_run_keeps_identical_replicas_and_resumes_in_one(tmp_path):
    _spawn("_stochastic_fit", tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["training"]["step"] == 6
    _assert_same_state(rank0["training"], rank1["training"])
    for key, value in rank0["map"].items():
        assert torch.equal(value, rank1["map"][key])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [3, 6]  # rank 0 alone logged

    # the checkpoint of the 2 processes continues in this single process
    torch.manual_seed(123)
    x, y = torch.randn(512, 2), torch.randn(512, 2) * 0.5 + 2.0
    resumed = otmap.fit(x, y, cost={"name": "WeakKernel", "gamma": 0.5}, steps=9,
                        batch_size=32, k_map=2, num_samples=3, gradient_penalty=0.1,
                        checkpoint_every=3, log_every=3,
                        eval_every=3, eval_samples=64, progress=False, device="cpu",
                        run_dir=tmp_path / "run", resume=True, **SMALL)
    assert resumed.training["step"] == 9
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [3, 6, 9]
    changed = [not torch.equal(v, rank0["map"][k]) for k, v in resumed.map.state_dict().items()]
    assert any(changed)


@pytest.mark.usefixtures("torch_single_thread")
def test_two_process_run_resumes_exactly_in_two_processes(tmp_path):
    _spawn("_exact_resume", tmp_path)
    for rank in (0, 1):
        states = torch.load(tmp_path / f"resume{rank}.pt")
        assert states["a"]["step"] == states["b"]["step"] == 6
        _assert_same_state(states["a"], states["b"])
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()]
            for run in ("A", "B")]
    assert [r["step"] for r in rows[1]] == [3, 6]
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows[0]] == \
        [{k: v for k, v in r.items() if k != "time"} for r in rows[1]]


def test_fit_under_torchrun_leaves_the_process_group_it_joined(tmp_path):
    _spawn("_fit_then_report_the_group", tmp_path, worker=_script_worker)
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report == {"initialized_after_fit": False}


def test_fit_keeps_a_process_group_the_caller_joined(tmp_path):
    _spawn("_fit_then_report_the_group", tmp_path)  # _worker joins before and leaves after
    assert json.loads((tmp_path / "rank0.json").read_text()) == {"initialized_after_fit": True}


def test_rank_seeds_differ_across_ranks_and_steps():
    seeds = {distributed.rank_seed(0, r, s) for r in range(4) for s in (0, 1000, 2000)}
    assert len(seeds) == 12
    assert distributed.rank_seed(3, 1, 5) == distributed.rank_seed(3, 1, 5)
    assert 0 <= distributed.rank_seed(3, 1, 5) < 2**63


@pytest.mark.usefixtures("torch_single_thread")
def test_cli_nproc_runs_under_torchrun_and_writes_one_run_folder(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "otmap", "train", "train.steps=4", "train.batch_size=16",
         "train.log_every=2", "train.eval_every=4", "train.eval_samples=64",
         "map.hidden=[16]", "potential.hidden=[16]", "train.device=cpu", "--nproc", "2",
         "--quiet", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4
    assert proc.stdout.count('"steps"') == 1  # only rank 0 printed its summary
    assert (out / "checkpoints" / "last.pt").is_file()
    assert (out / "plots" / "training.png").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [2, 4]
