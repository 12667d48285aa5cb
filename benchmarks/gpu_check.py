"""Steps per second and peak memory of otmap's paper-scale image recipes on synthetic data.

Each configuration (recipe x precision x compile) builds the recipe's networks with
``otmap.prepare`` on random tensors of the recipe's shapes (no data set is needed), then times
``solver.train_step`` after a few warm-up steps (which absorb ``torch.compile``'s compile).
Peak memory is ``torch.cuda.max_memory_allocated`` over warm-up and timed steps (on a CPU:
null). The results go to ``--out`` after every configuration, so a run stopped by a timeout
keeps what it finished. ``--collect DIR`` instead merges the parts that ``gpu_check.sh`` left
in DIR into one report.

    python benchmarks/gpu_check.py --device cuda --out measure.json
    python benchmarks/gpu_check.py --device cpu --steps 2 --warmup 1 --batch-size 4 \\
        --recipes otm-mnist-32 --precisions fp32 --compile off     # a CPU smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

RECIPES = ("otm-mnist-32", "otm-celeba-64")
PRECISIONS = ("fp32", "bf16", "auto")
#: the parts gpu_check.sh runs, in order
PARTS = ("install", "tests", "measure", "nccl")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def plan(recipes: list[str], precisions: list[str], compiles: list[bool]) -> list[dict]:
    """The configurations, cheapest first (every eager one before any compiled one), so that
    a timeout cuts the compiled ones; ``auto`` only eager (it measures eager networks)."""
    return [{"recipe": r, "precision": p, "compile": c}
            for c in sorted(set(compiles)) for r in recipes for p in precisions
            if not (c and p == "auto")]


def synthetic_data(config: Any, pool: int) -> tuple[Any, Any]:
    """``pool`` source samples from the recipe's toy source (noise vectors) and ``pool``
    uniform [-1, 1] images of the recipe's target shape (``channels`` x ``size`` x ``size``)."""
    import torch

    from otmap.data.specs import sampler_from_spec

    spec = config.target or {}
    if "size" not in spec:
        raise SystemExit(f"{config.name}: the target spec {spec} names no image size")
    shape = (int(spec.get("channels", 3)), int(spec["size"]), int(spec["size"]))
    x = sampler_from_spec(config.source, "source").sample(pool)
    return x, torch.rand(pool, *shape) * 2 - 1


def measure(recipe: str, precision: str, compile: bool, *, device: str, steps: int,
            warmup: int, batch_size: int | None = None, pool: int = 1024) -> dict:
    """One configuration: prepare on synthetic data, ``warmup`` untimed and ``steps`` timed
    training steps. Returns the choices as resolved, the seconds of each phase, steps_per_s,
    peak_mib (CUDA only) and the last step's losses."""
    import torch

    from otmap import prepare
    from otmap.experiments.recipes import load_run_config
    from otmap.train.acceleration import synchronize
    from otmap.train.fit import describe

    config = load_run_config(recipe)
    x, y = synthetic_data(config, pool)
    # the recipe's steps (a constant learning rate): auto measures as in the recipe's run
    train = {**dataclasses.asdict(config.train), "device": device, "precision": precision,
             "compile": compile}
    if batch_size is not None:
        train["batch_size"] = batch_size
    torch.manual_seed(0)
    start = time.perf_counter()
    setup = prepare(x, y, cost=config.cost, map=config.map, potential=config.potential,
                    **train)
    prepared = time.perf_counter() - start
    solver, n = setup.solver, setup.config.batch_size
    dev = next(solver.map.parameters()).device
    layout = torch.channels_last if setup.channels_last else torch.contiguous_format

    def batches(sampler: Any) -> Any:
        def draw() -> torch.Tensor:
            batch = sampler.sample(n).to(dev)
            return batch.contiguous(memory_format=layout) if batch.dim() == 4 else batch
        return draw

    sample_x, sample_y = batches(setup.source), batches(setup.target)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def run(count: int) -> tuple[float, dict]:
        synchronize(dev)
        begin = time.perf_counter()
        stats = {}
        for _ in range(count):
            stats = solver.train_step(sample_x, sample_y)
        synchronize(dev)
        return time.perf_counter() - begin, stats

    warm_seconds, _ = run(warmup)
    seconds, stats = run(steps)
    losses = {k: float(stats[k]) for k in ("loss_map", "loss_potential")}
    return {"recipe": recipe, "precision": precision,
            "precision_resolved": setup.precision.precision,
            "precision_seconds": setup.precision.seconds_per_step,
            "precision_speedup": setup.precision.speedup, "compile": compile,
            "channels_last": setup.channels_last, "batch_size": n, "device": str(dev),
            "description": describe(setup), "steps": steps, "warmup": warmup,
            "prepare_seconds": round(prepared, 3), "warmup_seconds": round(warm_seconds, 3),
            "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 3),
            "peak_mib": (round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
                         if dev.type == "cuda" else None),
            **losses, "finite": all(math.isfinite(v) for v in losses.values())}


def machine(device: str) -> dict:
    """torch's version and, on CUDA, the GPUs and whether bf16 is native there."""
    import torch

    from otmap.train.acceleration import native_bf16

    info: dict = {"torch": torch.__version__, "cuda": torch.version.cuda,
                  "device": device, "native_bf16": native_bf16(torch.device(device))}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["capability"] = list(torch.cuda.get_device_capability(torch.device(device)))
    return info


def _write(path: str | None, data: dict) -> None:
    """``data`` as JSON to ``path`` (atomically: a kill leaves the previous whole file), or
    to stdout."""
    text = json.dumps(data, indent=1)
    if path is None:
        print(text)
        return
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def measure_all(args: argparse.Namespace) -> dict:
    """Every configuration of the plan, the report rewritten after each; a failing one
    (out of memory, compile error) is recorded with its error and the next one runs."""
    import torch

    configs = plan(_csv(args.recipes), _csv(args.precisions),
                   [{"off": False, "on": True}[c] for c in _csv(args.compile)])
    report = {"machine": machine(args.device), "planned": configs, "results": []}
    for config in configs:
        print(f"gpu_check: {config}", file=sys.stderr, flush=True)
        try:
            result = measure(**config, device=args.device, steps=args.steps,
                             warmup=args.warmup, batch_size=args.batch_size, pool=args.pool)
        except Exception as err:  # recorded; the other configurations run
            result = {**config, "error": f"{type(err).__name__}: {err}"[:2000]}
        report["results"].append(result)
        _write(args.out, report)
        torch._dynamo.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return report


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


def collect(folder: str) -> dict:
    """The report of ``gpu_check.sh``: per part its exit status (124/137: timed out; null:
    not run), seconds and the end of its log; the measurements; the NCCL run's summary."""
    root = Path(folder)
    parts = {}
    for name in PARTS:
        rc, seconds = root / f"{name}.rc", root / f"{name}.seconds"
        parts[name] = {"rc": int(rc.read_text()) if rc.is_file() else None,
                       "seconds": int(seconds.read_text()) if seconds.is_file() else None,
                       "log_tail": _tail(root / f"{name}.log")}
    measured = root / "measure.json"
    report = {"parts": parts,
              "measure": json.loads(measured.read_text()) if measured.is_file() else None}
    lines = _tail(root / "nccl.log").strip().splitlines()
    if lines and lines[-1].startswith("{"):
        report["nccl_summary"] = json.loads(lines[-1])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma list of recipes")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help="comma list of train.precision values (auto: eager only)")
    parser.add_argument("--compile", default="off,on", help="comma list of off, on")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first (they include compiling)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="per-step batch (default: the recipe's)")
    parser.add_argument("--pool", type=int, default=1024,
                        help="synthetic samples per side (drawn from, like a data set)")
    parser.add_argument("--out", default=None, help="JSON file (default: stdout)")
    parser.add_argument("--collect", metavar="DIR", default=None,
                        help="instead: merge the parts gpu_check.sh left in DIR into --out")
    args = parser.parse_args(argv)
    if args.collect is not None:
        _write(args.out, collect(args.collect))
        return 0
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    report = measure_all(args)
    return 0 if all("error" not in r for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
