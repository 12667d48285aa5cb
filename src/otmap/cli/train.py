"""``otmap train``: train a recipe or YAML config, in one process or N under torchrun."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from otmap.errors import OTMapError, TrainingInterrupted


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train`` with ``subparsers`` (``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "train", help="train a recipe or YAML config",
        description="Train a recipe (see `otmap recipes`) or a YAML config; "
                    "override any key with key=value, e.g. train.steps=500.",
        epilog="SIGTERM or SIGINT (Ctrl-C) finishes the current step, writes "
               "checkpoints/last.pt, prints how to resume and exits with code "
               "143 (SIGTERM) or 130 (SIGINT), 128 + the signal's number; a "
               "second signal stops at once. Exit code 2: an otmap error "
               "(bad input, divergence).")
    p.add_argument("recipe", nargs="?", help="recipe name or YAML path (default recipe if absent)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=500")
    p.add_argument("--out", help="run folder (default: RUNS/NAME, numbered if taken)")
    p.add_argument("--runs", default="runs", help="parent folder of new runs (default: runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=int, default=None,
                   help="train in N local processes (runs torchrun --standalone "
                        "--nproc_per_node N -m otmap train ...); batch_size is per process")
    p.set_defaults(func=run)
    return p


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less its ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def run(args: argparse.Namespace) -> int:
    """Handler of ``otmap train``: 0, or the exit code of an interrupted run (130/143) or of
    the torchrun launch."""
    from otmap.experiments import runner
    from otmap.experiments.recipes import DEFAULT_RECIPE, load_run_config
    from otmap.train import distributed

    if args.recipe is not None and "=" in args.recipe:  # `otmap train k=v`: no recipe
        args.overrides.insert(0, args.recipe)
        args.recipe = None
    if args.nproc is not None and args.nproc < 1:
        raise OTMapError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc is not None and args.nproc > 1 and not distributed.Ranks.from_env().distributed:
        if args.out is None and not args.resume:  # every process must write to one folder
            config = load_run_config(args.recipe, args.overrides)
            args.argv += ["--out", str(runner.free_run_dir(args.runs, config.name))]
        command = distributed.launch_command(args.nproc, _without_nproc(args.argv))
        print("otmap: launching " + " ".join(command[1:]), file=sys.stderr)
        return subprocess.call(command)

    if args.resume and args.out is None:
        raise OTMapError("--resume needs --out RUN_DIR, the folder of the run to continue")
    if args.resume and args.recipe is None:  # continue with the run's own resolved config
        config = load_run_config(str(Path(args.out) / "config.yaml"), args.overrides)
    else:
        config = load_run_config(args.recipe, args.overrides)
    run_dir = args.out if args.out is not None else runner.free_run_dir(args.runs, config.name)
    main_rank = distributed.Ranks.from_env().is_main
    if args.recipe is None and not args.resume and main_rank:
        print(f"no recipe given: running the default recipe {DEFAULT_RECIPE!r}", file=sys.stderr)
    try:
        _, summary = runner.run(config, run_dir, resume=args.resume, progress=not args.quiet)
    except TrainingInterrupted as err:
        if main_rank:
            print(f"otmap: {err}", file=sys.stderr)
        return err.exit_code
    if main_rank:
        print(f"run folder: {run_dir} (plots in {run_dir}/plots)", file=sys.stderr)
        print(json.dumps(summary))
    return 0
