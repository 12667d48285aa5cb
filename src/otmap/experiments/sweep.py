"""Gamma sweeps: one run per (cost, gamma), then the comparison grid and the trade-off curve.

    otmap sweep not-toy-moons-square --gammas 0,0.25,0.5,0.75,1,1.25 \\
        --costs WeakQuadratic,WeakKernel --out runs/sweep

writes ``DIR/<cost>-g<gamma>/`` run folders, ``grid.png`` (rows: costs, columns: gamma),
``tradeoff.png`` (diversity vs transport cost; fidelity vs gamma), ``fidelity.png`` (fidelity
ratio during training, every run) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from otmap.data.specs import sampler_from_spec
from otmap.errors import InputError
from otmap.experiments.config import RunConfig
from otmap.experiments.runner import run
from otmap.viz import plots

_KERNEL_KEYS = ("kernel", "alpha", "sigma")
#: metrics of each run's last evaluation kept in summary.json (PSNR/SSIM for restoration)
_SUMMARY_KEYS = ("fidelity", "energy", "diversity", "transport_cost", "oscillating", "psnr",
                 "ssim", "psnr_posterior_mean", "psnr_input", "target_class_share")


def _final_eval(run_dir: Path) -> tuple[list[dict], dict]:
    """All rows of a run's metrics.jsonl and its last evaluation row."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows, [r for r in rows if "fidelity" in r][-1]


def gamma_sweep(config: RunConfig, gammas: list[float], costs: list[str], out: str | Path,
                progress: bool = True) -> list[dict]:
    """Train ``config`` once per cost name and gamma; returns one summary dict per run."""
    if config.source is None or config.target is None:
        raise InputError("a sweep needs a recipe with source and target data specs")
    out = Path(out)
    base_cost = config.cost if isinstance(config.cost, dict) else {}
    summary, cells, curves = [], {}, {}
    torch.manual_seed(config.train.seed)
    x = sampler_from_spec(config.source, "source").sample(1000)
    y = sampler_from_spec(config.target, "target").sample(2000)
    for name in costs:
        for gamma in gammas:
            shared = ("reduction", "scale", *(_KERNEL_KEYS if name == "WeakKernel" else ()))
            cost = {"name": name, "gamma": gamma,
                    **{k: base_cost[k] for k in shared if k in base_cost}}
            label = f"{name}-g{gamma:g}"
            run_config = dataclasses.replace(config, name=label, cost=cost)
            result, _ = run(run_config, out / label, progress=progress)
            rows, last = _final_eval(out / label)
            summary.append({"series": name, "gamma": gamma, "run_dir": str(out / label),
                            **{k: last[k] for k in _SUMMARY_KEYS if k in last}})
            if x.shape[1] == 2:
                cells[(name, f"\u03b3={gamma:g}")] = (x, result.transport(x, num_samples=8), y)
            curves[label] = rows
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    title = config.name
    plots.plot_tradeoff(summary, out / "tradeoff.png", title=title)
    plots.plot_metric_curves(curves, "fidelity", out / "fidelity.png", title=title)
    if cells:
        plots.plot_sweep_grid(cells, out / "grid.png", title=title)
    return summary
