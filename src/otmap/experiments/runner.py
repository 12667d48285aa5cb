"""Run a :class:`RunConfig`: build its data, fit, and summarise (shared by the CLI commands)."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from otmap.benchmarks.registry import benchmark_pair
from otmap.data.specs import sampler_from_spec
from otmap.errors import InputError, QualityWarning
from otmap.experiments.config import RunConfig
from otmap.experiments.evaluation import HeldOutSet, held_out_warnings
from otmap.model.result import TransportResult
from otmap.train.distributed import Ranks
from otmap.train.fit import fit


def free_run_dir(root: str | Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... if that already holds a run."""
    base = Path(root) / name
    path, i = base, 1
    while (path / "checkpoints").exists():
        i += 1
        path = base.with_name(f"{name}-{i}")
    return path


def time_to_targets(rows: list[dict], targets: Sequence[float],
                    metric: str = "l2_uvp") -> dict[str, dict[str, float | int | None]]:
    """For each target value X (key ``f"{X:g}"``): the ``time`` (wall seconds since the run's
    start, 2 decimals) and the ``step`` of the first of the run's metrics ``rows`` whose
    ``metric`` is at most X; None where no evaluation reached it.

    Returns ``{"seconds_to_target": {X: seconds}, "step_to_target": {X: step}}``."""
    out: dict[str, dict[str, float | int | None]] = {"seconds_to_target": {},
                                                      "step_to_target": {}}
    for target in targets:
        row = next((r for r in rows if metric in r and r[metric] <= target), None)
        key = f"{target:g}"
        out["seconds_to_target"][key] = None if row is None else round(row["time"], 2)
        out["step_to_target"][key] = None if row is None else row["step"]
    return out


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run folder's ``metrics.jsonl``."""
    text = (Path(run_dir) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line]


@contextlib.contextmanager
def _metrics_folder(run_dir: str | Path | None, needed: bool) -> Iterator[str | Path | None]:
    """``run_dir``; without one, a temporary run folder (removed afterwards) when the
    metrics rows are ``needed``, else None."""
    if run_dir is not None or not needed:
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix="otmap-run-") as folder:
        yield folder


def _with_live_test_picture(test: HeldOutSet, run_dir: str | Path | None, name: str):
    """``test.evaluate``, also redrawing ``plots/latest/test.png`` (input | output | truth rows
    of the held-out part) at each evaluation, with the random streams left as they were."""
    if run_dir is None:
        return test.evaluate

    def evaluate(result: TransportResult, x: Tensor, y: Tensor) -> dict[str, float]:
        with torch.random.fork_rng(devices=[]):
            test.plot(result, Path(run_dir) / "plots" / "latest" / "test.png", name)
        return test.evaluate(result, x, y)

    return evaluate


def run(config: RunConfig, run_dir: str | Path | None, *, resume: bool = False,
        progress: bool = True,
        target_l2_uvp: Sequence[float] = ()) -> tuple[TransportResult, dict]:
    """Fit the experiment ``config`` describes; returns the result and a summary dict
    (final metrics, steps, seconds, rollbacks; for benchmark pairs L2-UVP and cos, of the
    inverse map too where the result has one, and the linear Bures map's).

    ``target_l2_uvp``: values X (benchmark pairs only) for which the summary gives
    ``seconds_to_target`` and ``step_to_target`` (:func:`time_to_targets` on the run's
    metrics rows: the first evaluation with l2_uvp <= X; evaluations come every
    ``train.eval_every`` steps and their time counts in the run's). Without ``run_dir`` the
    rows are kept in a temporary run folder, so the run writes what a run folder holds (the
    time includes it, as with a run folder).
    """
    evaluator = None
    pair = None
    if config.benchmark is not None:
        if not isinstance(config.benchmark, dict):
            raise InputError(f"benchmark must be a mapping such as {{name: gaussian, dim: 16}}, "
                             f"got {config.benchmark!r}")
        spec = dict(config.benchmark)
        try:
            pair = benchmark_pair(spec.pop("name", None), **spec)
        except TypeError as err:
            raise InputError(f"benchmark: {err}") from None
        source, target = pair.source, pair.target

        def evaluator(result: TransportResult, x: Tensor, y: Tensor) -> dict[str, float]:
            return pair.score(result.transport, n=4096)
    else:
        if target_l2_uvp:
            raise InputError("a target L2-UVP needs a benchmark pair, whose true map the run's "
                             "evaluations score")
        if config.source is None or config.target is None:
            raise InputError("a run needs source and target data specs, or a benchmark")
        source = sampler_from_spec(config.source, "source")
        target = sampler_from_spec(config.target, "target")
    test = HeldOutSet(config.test, config.source) if config.test is not None else None
    if test is not None:
        evaluator = _with_live_test_picture(test, run_dir, config.name)
    start = time.perf_counter()
    with _metrics_folder(run_dir, bool(target_l2_uvp)) as folder:
        result = fit(source, target, config.train, cost=config.cost, map=config.map,
                     potential=config.potential, run_dir=folder, resume=resume,
                     progress=progress, evaluator=evaluator,
                     record={"name": config.name, "description": config.description,
                             "source": config.source, "target": config.target,
                             "benchmark": config.benchmark, "test": config.test})
        summary = {"name": config.name, "steps": config.train.steps,
                   "seconds": round(time.perf_counter() - start, 2),
                   "rollbacks": (result.training or {}).get("rollbacks", 0)}
        ranks = Ranks.from_env()  # fit has left the process group: rank 0 scores alone
        if not ranks.is_main:
            return result, summary
        if target_l2_uvp:
            summary.update(time_to_targets(read_metrics(folder), target_l2_uvp))
    if folder is not run_dir:  # the temporary folder is gone
        result.run_dir = None
    if pair is not None:
        summary.update(pair.score(result.transport, n=4096))
        if result.invertible:
            inverse = pair.score_inverse(result.inverse, n=4096)
            summary.update({f"inverse_{k}": v for k, v in inverse.items()})
        baseline = pair.baseline_scores()["bures"]
        summary.update({"bures_l2_uvp": baseline["l2_uvp"], "bures_cos": baseline["cos"]})
    if test is not None:
        n = config.train.eval_samples
        summary.update(test.evaluate(result, source.sample(n), target.sample(n)))
        for message in held_out_warnings(summary, float(getattr(result.cost, "gamma", 0.0))):
            print(f"otmap: warning: {message}", file=sys.stderr)
            warnings.warn(message, QualityWarning, stacklevel=2)
            summary.setdefault("warnings", []).append(message)
        if run_dir is not None:
            test.plot(result, Path(run_dir) / "plots" / "test.png", config.name)
    if run_dir is not None:
        summary["run_dir"] = str(run_dir)
    return result, summary
