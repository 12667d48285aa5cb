"""``otmap sweep``: a gamma sweep of a stochastic (weak-cost) recipe."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from otmap.cli._common import single_process
from otmap.errors import OTMapError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sweep`` with ``subparsers`` (``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "sweep", help="gamma sweep of a stochastic recipe: grid and trade-off",
        description="Train a recipe once per cost and gamma; draw the comparison "
                    "grid, the similarity/diversity trade-off and the fidelity "
                    "curves.")
    p.add_argument("recipe", help="recipe name or YAML path (a weak-cost recipe)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=500")
    p.add_argument("--gammas", default="0,0.25,0.5,0.75,1,1.25")
    p.add_argument("--costs", default="WeakQuadratic,WeakKernel",
                   help="comma-separated cost names (default: both weak costs)")
    p.add_argument("--out", help="sweep folder (default: runs/sweep-NAME)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``otmap sweep``: one line per trained run on stderr, the summary as JSON."""
    from otmap.experiments.recipes import load_run_config
    from otmap.experiments.sweep import gamma_sweep

    single_process("sweep")
    config = load_run_config(args.recipe, args.overrides)
    try:
        gammas = [float(g) for g in args.gammas.split(",")]
    except ValueError:
        raise OTMapError(f"--gammas must be numbers separated by commas: {args.gammas!r}") from None
    out = args.out or f"runs/sweep-{config.name}"
    summary = gamma_sweep(config, gammas, args.costs.split(","), out, progress=not args.quiet)
    for row in summary:
        shown = "  ".join(f"{k} {v:.3f}" for k, v in row.items()
                          if k not in ("series", "gamma", "run_dir") and v is not None)
        print(f"{row['series']:<14} gamma {row['gamma']:<5g} {shown}", file=sys.stderr)
    print(f"figures: {out}/grid.png, {out}/tradeoff.png, {out}/fidelity.png", file=sys.stderr)
    print(json.dumps(summary))
    return 0
