"""Checkpoints that survive failures: best.pt, rollback on divergence, SIGTERM / SIGINT, kill -9,
checkpoints by wall time, numbered checkpoints, and full disks."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import otmap
from otmap.cli import build_parser, main
from otmap.core.solver import NeuralOT
from otmap.errors import CheckpointError, InputError, TrainingDivergedError, TrainingInterrupted
from otmap.model.checkpoint import atomic_save
from otmap.train.fit import prepare
from otmap.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread", "no_pictures")

#: a tiny default-recipe run for the command-line tests (constant learning rate, so a run
#: resumed with fewer steps than it was started with ends as a run of that length; float32, so
#: runs of different lengths cannot resolve precision=auto differently)
FAST = ["train.log_every=10", "train.eval_every=200", "train.checkpoint_every=50",
        "train.batch_size=32", "train.eval_samples=64", "train.k_map=2",
        "train.lr_schedule=constant", "map.hidden=[16,16]", "potential.hidden=[16,16]",
        "train.precision=fp32"]
STEPS = 400


def _skip_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    """No plots in the in-process runs (drawing them would take most of this file's time; the
    subprocess runs still draw theirs)."""
    monkeypatch.setattr(Trainer, "plot", lambda self: None)
    monkeypatch.setattr(Trainer, "_plot_live", lambda self, step: None, raising=False)


@pytest.fixture
def no_pictures(monkeypatch):
    _skip_pictures(monkeypatch)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _assert_equal(a: object, b: object, where: str = "") -> None:
    """Nested dicts / lists of tensors and plain values, tensors bit for bit."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def _assert_same_run(run: Path, reference: Path) -> None:
    """Bit-identical training state (weights, optimisers, step), log and best.pt."""
    _assert_equal(otmap.load(run).training, otmap.load(reference).training)
    assert _without_time(_rows(run)) == _without_time(_rows(reference))
    best, best_ref = (torch.load(r / "checkpoints" / "best.pt", weights_only=True)
                      for r in (run, reference))
    _assert_equal(best["best"], best_ref["best"])
    _assert_equal(best["model"]["map_state"], best_ref["model"]["map_state"])


# ------------------------------------------------------------------------------ best.pt

def test_best_pt_holds_the_step_with_the_best_metric(gaussian2d, small_fit_kwargs, tmp_path):
    calls = []

    def evaluator(result, x, y):  # "peak" is best (highest) at the 5th evaluation: step 10
        calls.append(None)
        return {"l2_uvp": gaussian2d.l2_uvp(result.transport(x), x),
                "peak": -abs(len(calls) - 5.0)}

    common = dict(seed=1, log_every=2, eval_every=2, checkpoint_every=8, evaluator=evaluator,
                  **small_fit_kwargs)
    fit = lambda run, **kw: otmap.fit(gaussian2d.source, gaussian2d.target, run_dir=run,  # noqa: E731
                                      **{**common, **kw})
    fit(tmp_path / "auto", steps=24)
    rows = [r for r in _rows(tmp_path / "auto") if "l2_uvp" in r]
    best = torch.load(tmp_path / "auto" / "checkpoints" / "best.pt", weights_only=True)["best"]
    argmin = min(rows, key=lambda r: r["l2_uvp"])
    assert best["metric"] == "l2_uvp"  # auto: the run's headline metric
    assert (best["step"], best["value"]) == (argmin["step"], argmin["l2_uvp"])
    assert best["fidelity"] == argmin["fidelity"]

    calls.clear()
    fit(tmp_path / "peak", steps=24, best_metric="max:peak")
    calls.clear()
    fit(tmp_path / "ten", steps=10)  # the same run, stopped at step 10
    best = otmap.load(tmp_path / "peak", checkpoint="best")
    assert best.training is None
    _assert_equal(best.map.state_dict(), otmap.load(tmp_path / "ten").training["map"])
    record = torch.load(tmp_path / "peak" / "checkpoints" / "best.pt", weights_only=True)
    assert record["best"]["step"] == 10 and record["best"]["metric"] == "peak"
    last = otmap.load(tmp_path / "peak").training["map"]
    assert not all(torch.equal(v, last[k]) for k, v in best.map.state_dict().items())

    # best.pt survives --resume: half a run, resumed, keeps the same best as the whole run
    calls.clear()
    fit(tmp_path / "half", steps=12, best_metric="max:peak")
    fit(tmp_path / "half", steps=24, best_metric="max:peak", resume=True)
    resumed = torch.load(tmp_path / "half" / "checkpoints" / "best.pt", weights_only=True)
    _assert_equal(resumed["best"], record["best"])


def test_best_metric_the_run_does_not_log(gaussian2d, small_fit_kwargs):
    with pytest.raises(InputError, match="log no 'psnr'"):
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=4, eval_every=2,
                  best_metric="psnr", **small_fit_kwargs)
    with pytest.raises(InputError, match="best_metric"):
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=4, best_metric="psnrr",
                  **small_fit_kwargs)


def test_load_names_the_checkpoints_of_a_run(gaussian2d, small_fit_kwargs, tmp_path):
    run = tmp_path / "run"
    otmap.fit(gaussian2d.source, gaussian2d.target, steps=12, checkpoint_every=4,
              keep_checkpoints=2, eval_every=4, run_dir=run, **small_fit_kwargs)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "last.pt", "step-00000008.pt", "step-00000012.pt"]
    assert otmap.load(run, checkpoint=8).training["step"] == 8
    assert otmap.load(run, checkpoint="12").training["step"] == 12
    with pytest.raises(CheckpointError, match="keep_checkpoints"):
        otmap.load(run, checkpoint=4)
    with pytest.raises(CheckpointError, match="'last', 'best' or a step"):
        otmap.load(run, checkpoint="first")
    with pytest.raises(CheckpointError, match="pass the run folder"):
        otmap.load(run / "checkpoints" / "last.pt", checkpoint="best")
    (run / "checkpoints" / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="best.pt is written at the first evaluation"):
        otmap.load(run, checkpoint="best")


# ------------------------------------------------------------------------------ rollback

def _nan_after(step: int, once: bool = True):
    """A NeuralOT.train_step that fills the map's weights with NaN after step ``step`` (the
    first time only, or after every later step too)."""
    original, done = NeuralOT.train_step, []

    def train_step(solver: NeuralOT, *args):
        stats = original(solver, *args)
        if (solver.step == step and not done) if once else solver.step >= step:
            done.append(solver.step)
            with torch.no_grad():
                for p in solver.map.parameters():
                    p.fill_(float("nan"))
        return stats

    return train_step


ROLLBACK = dict(seed=2, log_every=2, eval_every=4, checkpoint_every=4, on_divergence="rollback")


def _fit_nan(pair, monkeypatch, kwargs, **options):
    """A run whose map turns NaN after step 7 (seen at step 8; the last checkpoint is 4)."""
    monkeypatch.setattr(NeuralOT, "train_step", _nan_after(7))
    return otmap.fit(pair.source, pair.target, **{**ROLLBACK, **kwargs, **options})


def test_injected_nan_is_rolled_back_and_the_run_finishes(gaussian2d, small_fit_kwargs,
                                                          tmp_path, monkeypatch):
    with pytest.warns(RuntimeWarning, match="rollback 1 of at most 3 to step 4"):
        result = _fit_nan(gaussian2d, monkeypatch, small_fit_kwargs, steps=24,
                          run_dir=tmp_path / "run")
    assert result.training["rollbacks"] == 1
    assert all(torch.isfinite(p).all() for p in result.map.parameters())
    rows = _rows(tmp_path / "run")
    rollback = [r for r in rows if "rollback" in r]
    assert rollback == [{"step": 4, "rollback": 1.0, "diverged_step": 8.0, "lr_scale": 0.5,
                         "time": rollback[0]["time"]}]
    assert [r["step"] for r in rows] == [2, 4, 4, *range(6, 25, 2)]
    assert all(v == v for r in rows for v in r.values())  # no NaN logged
    last = otmap.load(tmp_path / "run").training
    assert last["step"] == 24 and last["rollbacks"] == 1
    assert last["map_optimizer"]["param_groups"][0]["lr"] == 0.5e-3  # both rates halved
    assert last["potential_optimizer"]["param_groups"][0]["lr"] == 0.5e-3
    # without a run folder the rollback returns to an in-memory copy: the same run
    with pytest.warns(RuntimeWarning, match="rollback 1"):
        in_memory = _fit_nan(gaussian2d, monkeypatch, small_fit_kwargs, steps=24)
    _assert_equal(in_memory.training, last)


def test_a_rolled_back_run_resumes_exactly(gaussian2d, small_fit_kwargs, tmp_path,
                                           monkeypatch):
    with pytest.warns(RuntimeWarning, match="rollback 1"):
        _fit_nan(gaussian2d, monkeypatch, small_fit_kwargs, steps=24, run_dir=tmp_path / "A")
        _fit_nan(gaussian2d, monkeypatch, small_fit_kwargs, steps=16, run_dir=tmp_path / "B")
    assert otmap.load(tmp_path / "B").training["rollbacks"] == 1
    _fit_nan(gaussian2d, monkeypatch, small_fit_kwargs, steps=24, run_dir=tmp_path / "B",
             resume=True)
    _assert_same_run(tmp_path / "B", tmp_path / "A")


def test_rollbacks_are_limited(gaussian2d, small_fit_kwargs, tmp_path, monkeypatch):
    monkeypatch.setattr(NeuralOT, "train_step", _nan_after(5, once=False))
    with pytest.warns(RuntimeWarning, match="rollback 2"), \
            pytest.raises(TrainingDivergedError, match="after 2 rollback"):
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=24, run_dir=tmp_path / "run",
                  max_rollbacks=2, **{**ROLLBACK, **small_fit_kwargs})
    assert [r["rollback"] for r in _rows(tmp_path / "run") if "rollback" in r] == [1.0, 2.0]


def test_on_divergence_auto_rolls_back_images_and_stops_vectors(small_fit_kwargs):
    kwargs = {k: v for k, v in small_fit_kwargs.items() if k not in ("map", "potential")}
    for data, expected in ((torch.rand(64, 1, 8, 8) * 2 - 1, "rollback"),
                           (torch.randn(64, 2), "stop")):
        setup = prepare(data, data, steps=1, **{k: v for k, v in kwargs.items()
                                                if k != "progress"})
        trainer = Trainer(setup.solver, setup.source, setup.target, setup.config,
                          setup.result, progress=False)
        assert trainer.on_divergence == expected


# ------------------------------------------------------------------------------ signals

@pytest.fixture
def python_sigint() -> Iterator[None]:
    """Python's Ctrl-C handler, even where the test runner was started with SIGINT ignored (a
    background job of a non-interactive shell): otmap leaves ignored signals alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_in_python_writes_a_checkpoint_and_resumes_exactly(gaussian2d, small_fit_kwargs,
                                                                   tmp_path, python_sigint):
    common = dict(steps=24, seed=3, log_every=2, eval_every=4, checkpoint_every=8,
                  **small_fit_kwargs)
    otmap.fit(gaussian2d.source, gaussian2d.target, run_dir=tmp_path / "A", **common)
    before = signal.getsignal(signal.SIGINT)

    def interrupt(result, x, y):  # Ctrl-C during the first evaluation (step 4)
        if not interrupt.sent:
            interrupt.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return {}

    interrupt.sent = False
    with pytest.raises(TrainingInterrupted) as err:
        otmap.fit(gaussian2d.source, gaussian2d.target, run_dir=tmp_path / "B",
                  evaluator=interrupt, **common)
    # the step running when the signal came ends, then the checkpoint is written
    assert err.value.exit_code == 130 and "SIGINT at step 5" in str(err.value)
    assert "--resume" in str(err.value) and err.value.result.training["step"] == 5
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are given back
    assert otmap.load(tmp_path / "B").training["step"] == 5
    otmap.fit(gaussian2d.source, gaussian2d.target, run_dir=tmp_path / "B", resume=True,
              **common)
    _assert_same_run(tmp_path / "B", tmp_path / "A")


def test_fit_in_a_thread_installs_no_handlers(gaussian2d, small_fit_kwargs):
    out = []
    thread = threading.Thread(target=lambda: out.append(
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=3, **small_fit_kwargs)))
    thread.start()
    thread.join()
    assert out and out[0].training["step"] == 3


@pytest.fixture(scope="module")
def reference(tmp_path_factory, torch_single_thread) -> Path:
    """The uninterrupted command-line run that the interrupted ones must end as."""
    run = tmp_path_factory.mktemp("reference") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _skip_pictures(monkeypatch)
        assert main(["train", *FAST, f"train.steps={STEPS}", "--out", str(run), "--quiet"]) == 0
    return run


def _default_sigint() -> None:
    """In the child: SIGINT at its default, even where the test runner ignores it (a
    background job), so Python installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict[str, dict]:
    """Four long ``otmap train`` subprocesses, started together and stopped early: SIGTERM
    and SIGINT after the first checkpoint, kill -9 after the checkpoint of step 100 (keeping 3
    numbered ones), kill -9 of a run checkpointed by wall time only (every 0.12 s, so
    that it is killed long before the reference run's last step even on a fast CPU)."""
    root = tmp_path_factory.mktemp("stopped")
    extra = {"SIGTERM": [], "SIGINT": [], "kill": ["train.keep_checkpoints=3"],
             "minutes": ["train.checkpoint_every=1000000", "train.checkpoint_minutes=0.002"]}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cases = {}
    for name, options in extra.items():
        out = root / name
        err = open(root / f"{name}.err", "w")  # noqa: SIM115 (closed below)
        command = [sys.executable, "-m", "otmap", "train", *FAST, "train.steps=100000",
                   *options, "--out", str(out), "--quiet"]
        cases[name] = {"out": out, "err": err, "mtimes": set(),
                       "process": subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                                   stderr=err, env=env,
                                                   preexec_fn=_default_sigint)}
    deadline = time.monotonic() + 240
    pending = set(cases)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            case = cases[name]
            process, folder = case["process"], case["out"] / "checkpoints"
            if process.poll() is not None:
                pytest.fail(f"{name}: otmap train exited early: "
                            f"{(root / f'{name}.err').read_text()}")
            last = folder / "last.pt"
            if name in ("SIGTERM", "SIGINT") and last.exists():
                process.send_signal(getattr(signal, name))
            elif name == "kill" and (folder / "step-00000100.pt").exists():
                process.kill()
            elif name == "minutes" and last.exists():
                case["mtimes"].add(last.stat().st_mtime_ns)
                if len(case["mtimes"]) < 3:  # two timed checkpoints after the first
                    continue
                process.kill()
                case["killed_at"] = time.time()
            else:
                continue
            pending.discard(name)
        time.sleep(0.01)
    for case in cases.values():
        if case["process"].poll() is None and pending:
            case["process"].kill()
        case["rc"] = case["process"].wait(timeout=120)
        case["err"].close()
        case["stderr"] = Path(case["err"].name).read_text()
    assert not pending, f"not stopped in time: {pending}"
    return cases


def _resume(run: Path) -> None:
    assert main(["train", f"train.steps={STEPS}", "--out", str(run), "--resume", "--quiet"]) == 0


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_leaves_a_checkpoint_that_resumes_bit_identically(stopped, reference, name,
                                                                 code):
    case = stopped[name]
    assert case["rc"] == code, case["stderr"]
    assert f"interrupted by {name} at step" in case["stderr"]
    assert f"otmap train --out {case['out']} --resume" in case["stderr"]
    step = otmap.load(case["out"]).training["step"]
    assert 50 <= step < STEPS
    _resume(case["out"])
    _assert_same_run(case["out"], reference)


def test_kill_9_loses_at_most_one_checkpoint_interval(stopped, reference):
    case = stopped["kill"]
    assert case["rc"] == -signal.SIGKILL
    step = otmap.load(case["out"]).training["step"]
    logged = max(r["step"] for r in _rows(case["out"]))
    assert 100 <= step < STEPS and logged - step <= 50  # train.checkpoint_every
    kept = sorted(int(p.stem[5:]) for p in (case["out"] / "checkpoints").glob("step-*.pt"))
    assert kept and all(s % 50 == 0 and s <= step for s in kept)
    _resume(case["out"])
    _assert_same_run(case["out"], reference)
    kept = sorted(p.name for p in (case["out"] / "checkpoints").glob("step-*.pt"))
    assert kept == ["step-00000300.pt", "step-00000350.pt", "step-00000400.pt"]


def test_kill_9_with_checkpoint_minutes_loses_at_most_that_time(stopped, reference):
    case = stopped["minutes"]
    assert case["rc"] == -signal.SIGKILL
    last = case["out"] / "checkpoints" / "last.pt"
    # 0.12 s between checkpoints, plus a step and the write on a busy machine
    assert case["killed_at"] - last.stat().st_mtime < 0.12 + 2.0
    step = otmap.load(case["out"]).training["step"]
    assert 0 < step < STEPS
    _resume(case["out"])
    _assert_same_run(case["out"], reference)


# ------------------------------------------------------------------------------ CLI, disk

def test_cli_checkpoint_flag(reference, tmp_path, capsys):
    out = tmp_path / "best.pt"
    assert main(["sample", str(reference), "--checkpoint", "best", "--n", "5",
                 "--out", str(out)]) == 0
    best = otmap.load(reference, checkpoint="best")
    torch.manual_seed(0)  # as `otmap sample --seed 0`
    expected = best.sample(5)
    assert torch.equal(torch.load(out), expected)
    assert main(["sample", str(reference), "--checkpoint", "7", "--out", str(out)]) == 2
    parser = build_parser()
    for command in (["eval", "r", "--fid"], ["apply", "r", "--input", "i", "--output", "o"]):
        assert parser.parse_args([*command, "--checkpoint", "best"]).checkpoint == "best"
        assert parser.parse_args(command).checkpoint == "last"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "143 (SIGTERM) or 130 (SIGINT)" in help_text


@pytest.mark.parametrize("failure", ["torch.save", "fsync"])
def test_full_disk_raises_checkpoint_error_and_keeps_the_old_file(tmp_path, monkeypatch,
                                                                  failure):
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    atomic_save({"good": torch.ones(3)}, path)
    good = path.read_bytes()

    def full(*args, **kwargs):
        if failure == "torch.save":  # what torch raises when the disk fills mid-write
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write "
                               "failed")
        raise OSError(errno.ENOSPC, "No space left on device")

    if failure == "torch.save":
        monkeypatch.setattr(torch, "save", full)
    else:
        monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError) as err:
        atomic_save({"new": torch.zeros(3)}, path)
    message = str(err.value)
    assert str(path) in message and "Free disk space" in message
    assert "another run folder" in message
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left
