"""Run a :class:`RunConfig`: build its data, fit, and summarise (shared by the CLI commands)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from otmap.benchmarks.registry import benchmark_pair
from otmap.data.specs import sampler_from_spec
from otmap.errors import InputError
from otmap.experiments.config import RunConfig
from otmap.experiments.evaluation import HeldOutSet
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
        progress: bool = True) -> tuple[TransportResult, dict]:
    """Fit the experiment ``config`` describes; returns the result and a summary dict
    (final metrics, steps, seconds, rollbacks; for benchmark pairs L2-UVP and cos, of the
    inverse map too where the result has one, and the linear Bures map's)."""
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
        if config.source is None or config.target is None:
            raise InputError("a run needs source and target data specs, or a benchmark")
        source = sampler_from_spec(config.source, "source")
        target = sampler_from_spec(config.target, "target")
    test = HeldOutSet(config.test, config.source) if config.test is not None else None
    if test is not None:
        evaluator = _with_live_test_picture(test, run_dir, config.name)
    start = time.perf_counter()
    result = fit(source, target, config.train, cost=config.cost, map=config.map,
                 potential=config.potential, run_dir=run_dir, resume=resume, progress=progress,
                 evaluator=evaluator,
                 record={"name": config.name, "description": config.description,
                         "source": config.source, "target": config.target,
                         "benchmark": config.benchmark, "test": config.test})
    summary = {"name": config.name, "steps": config.train.steps,
               "seconds": round(time.perf_counter() - start, 2),
               "rollbacks": (result.training or {}).get("rollbacks", 0)}
    ranks = Ranks.from_env()  # fit has left the process group: rank 0 scores alone
    if not ranks.is_main:
        return result, summary
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
        if run_dir is not None:
            test.plot(result, Path(run_dir) / "plots" / "test.png", config.name)
    if run_dir is not None:
        summary["run_dir"] = str(run_dir)
    return result, summary
