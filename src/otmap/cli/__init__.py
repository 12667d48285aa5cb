"""The ``otmap`` command line: ``train``, ``recipes``, ``bench``, ``sweep``, ``sample``, ``eval``,
``apply``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from otmap.errors import OTMapError, TrainingInterrupted
from otmap.experiments.apply import add_parser as add_apply_parser
from otmap.experiments.speed import add_arguments as add_speed_arguments
from otmap.model.checkpoint import CHECKPOINT_HELP


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


def _train(args: argparse.Namespace) -> int:
    from otmap.experiments.recipes import DEFAULT_RECIPE, load_run_config
    from otmap.experiments.runner import free_run_dir, run
    from otmap.train import distributed

    if args.nproc is not None and args.nproc < 1:
        raise OTMapError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc is not None and args.nproc > 1 and not distributed.Ranks.from_env().distributed:
        if args.out is None and not args.resume:  # every process must write to one folder
            config = load_run_config(args.recipe, args.overrides)
            args.argv += ["--out", str(free_run_dir(args.runs, config.name))]
        command = distributed.launch_command(args.nproc, _without_nproc(args.argv))
        print("otmap: launching " + " ".join(command[1:]), file=sys.stderr)
        return subprocess.call(command)

    if args.resume and args.out is None:
        raise OTMapError("--resume needs --out RUN_DIR, the folder of the run to continue")
    if args.resume and args.recipe is None:  # continue with the run's own resolved config
        config = load_run_config(str(Path(args.out) / "config.yaml"), args.overrides)
    else:
        config = load_run_config(args.recipe, args.overrides)
    run_dir = args.out if args.out is not None else free_run_dir(args.runs, config.name)
    main_rank = distributed.Ranks.from_env().is_main
    if args.recipe is None and not args.resume and main_rank:
        print(f"no recipe given: running the default recipe {DEFAULT_RECIPE!r}", file=sys.stderr)
    try:
        _, summary = run(config, run_dir, resume=args.resume, progress=not args.quiet)
    except TrainingInterrupted as err:
        if main_rank:
            print(f"otmap: {err}", file=sys.stderr)
        return err.exit_code
    if main_rank:
        print(f"run folder: {run_dir} (plots in {run_dir}/plots)", file=sys.stderr)
        print(json.dumps(summary))
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from otmap.experiments.recipes import describe_recipes

    rows = describe_recipes()
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    return 0


def _single_process(command: str) -> None:
    from otmap.train.distributed import Ranks

    if Ranks.from_env().distributed:
        raise OTMapError(f"`otmap {command}` runs in one process; only `otmap train` runs under "
                         "torchrun")


def _bench_one(args: argparse.Namespace, dim: int) -> dict:
    """Fit one ground-truth pair with ``otmap.fit``'s defaults; its summary with the forward
    (and, for quadratic costs, inverse) scores and the linear baseline's."""
    from otmap.experiments.config import RunConfig
    from otmap.experiments.runner import run
    from otmap.train.config import TrainConfig

    steps = {} if args.steps is None else {"steps": args.steps}
    train = TrainConfig(seed=args.seed, device=args.device, **steps)
    spec = {"name": args.pair, "dim": dim, "seed": args.seed}
    if getattr(args, "root", None) is not None:
        spec["root"] = args.root
    out = args.out if args.out is None or not getattr(args, "all", False) else f"{args.out}/{dim}"
    config = RunConfig(name=f"bench-{args.pair}-{dim}", benchmark=spec, train=train)
    _, summary = run(config, out, progress=not args.quiet)
    summary.update({"pair": args.pair, "dim": dim})
    return summary


def _bench_line(summary: dict) -> str:
    inverse = (f"  inverse L2-UVP {summary['inverse_l2_uvp']:.3f}%"
               if "inverse_l2_uvp" in summary else "")
    return (f"{summary['pair']} dim {summary['dim']}: L2-UVP {summary['l2_uvp']:.3f}%  "
            f"cos {summary['cos']:.4f}{inverse}  ({summary['steps']} steps, "
            f"{summary['seconds']:.0f} s); linear (Bures) baseline L2-UVP "
            f"{summary['bures_l2_uvp']:.3f}%")


def _bench(args: argparse.Namespace) -> int:
    _single_process("bench")
    if getattr(args, "all", False):
        from otmap.benchmarks.w2b import DIMS, published_table

        if args.dim is not None:
            raise OTMapError("--all runs every dimension; drop --dim")
        rows = []
        for dim in DIMS:
            rows.append(_bench_one(args, dim))
            print(_bench_line(rows[-1]), file=sys.stderr)
        print(published_table(rows), file=sys.stderr if args.json else sys.stdout)
        if args.json:
            print(json.dumps({"pair": args.pair, "runs": rows}))
        return 0
    if args.dim is None:
        raise OTMapError(f"say which dimension: otmap bench {args.pair} --dim D"
                         + (" (or --all)" if args.pair == "w2b" else ""))
    summary = _bench_one(args, args.dim)
    print(json.dumps(summary) if args.json else _bench_line(summary))
    return 0


def _speed(args: argparse.Namespace) -> int:
    from otmap.experiments.speed import main as speed_main

    _single_process("bench speed")
    return speed_main(args)


def _sweep(args: argparse.Namespace) -> int:
    from otmap.experiments.recipes import load_run_config
    from otmap.experiments.sweep import gamma_sweep

    _single_process("sweep")
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


def _sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from otmap.model.result import load
    from otmap.viz.plots import plot_image_grid

    result = load(args.run, trusted=args.trusted, checkpoint=args.checkpoint)
    torch.manual_seed(args.seed)
    samples = result.sample(args.n)
    out = args.out
    if out.endswith(".png"):
        if samples.dim() != 4:
            raise OTMapError("a PNG grid needs image samples; write vectors to .pt or .npy")
        plot_image_grid(samples, out, title=f"{args.n} samples")
    elif out.endswith(".npy"):
        np.save(out, samples.numpy())
    elif out.endswith(".pt"):
        torch.save(samples, out)
    else:
        raise OTMapError(f"--out must end in .png, .pt or .npy, got {out}")
    print(f"wrote {args.n} samples {list(samples.shape[1:])} to {out}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from otmap.experiments.generation import evaluate_generator
    from otmap.model.result import load

    if not args.fid:
        raise OTMapError("say what to evaluate: --fid")
    result = load(args.run, trusted=args.trusted, checkpoint=args.checkpoint)
    torch.manual_seed(args.seed)
    part = None
    if args.reference_part:
        part = tuple(float(v) for v in args.reference_part.split(","))
    kwargs = {"weights_path": args.inception_weights} if args.features == "inception" else {}
    summary = evaluate_generator(result, n=args.n, features=args.features,
                                 reference_part=part, **kwargs)
    print(f"FID {summary['fid']:.2f} against {summary['n_reference']} held-out images "
          f"(two real halves: {summary['fid_real_halves']:.2f}, ratio "
          f"{summary['fid_ratio']:.2f})", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otmap", description="Neural optimal transport maps.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a recipe or YAML config",
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
    p.set_defaults(func=_train)

    p = sub.add_parser("recipes", help="list the built-in recipes")
    p.set_defaults(func=_recipes)

    p = sub.add_parser("sweep", help="gamma sweep of a stochastic recipe: grid and trade-off",
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
    p.set_defaults(func=_sweep)

    p = sub.add_parser("sample", help="draw samples T(x) from a trained generative map")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True, help="FILE.png (image grid), .pt or .npy")
    p.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trusted", action="store_true",
                   help="allow checkpoints holding pickled custom modules")
    p.set_defaults(func=_sample)

    p = sub.add_parser("eval", help="held-out metrics of a trained generative map (FID)")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("--fid", action="store_true", help="FID to held-out real images")
    p.add_argument("--n", type=int, default=1000, help="number of samples")
    p.add_argument("--features", default="digits", choices=["digits", "inception"])
    p.add_argument("--inception-weights", default=None,
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (local file)")
    p.add_argument("--reference-part", default=None,
                   help="START,END fraction of the dataset to compare with (default: held out)")
    p.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trusted", action="store_true")
    p.set_defaults(func=_eval)

    add_apply_parser(sub)

    bench = sub.add_parser("bench", help="benchmarks: ground-truth pairs, training speed")
    kinds = bench.add_subparsers(dest="pair", required=True)
    helps = {"gaussian": "a Gaussian pair (closed-form affine map)",
             "brenier": "a Gaussian mixture pushed by a known convex potential's gradient",
             "w2b": "the continuous Wasserstein-2 benchmark's Mix3toMix10 pairs"}
    for pair, text in helps.items():
        p = kinds.add_parser(pair, help=f"fit {text} with otmap.fit's defaults and score it "
                                        "(L2-UVP, cos, both directions)")
        p.add_argument("--dim", type=int, default=None)
        if pair == "w2b":
            p.add_argument("--root", default=None,
                           help="folder with the benchmark's {D}_v1.pt/{D}_v2.pt files "
                                "(default: $OTMAP_W2B_DIR, else ~/.cache/otmap/w2b)")
            p.add_argument("--all", action="store_true",
                           help="every D = 2 ... 128, with the paper's published table")
        p.add_argument("--steps", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto")
        p.add_argument("--out", default=None, help="also write a run folder here")
        p.add_argument("--json", action="store_true", help="last line: one JSON object")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=_bench)
    p = kinds.add_parser("speed", help="steps/s and peak memory of the toy, vector and image "
                                       "recipes against a plain reference-style loop")
    add_speed_arguments(p)
    p.set_defaults(func=_speed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if args.command in ("train", "sweep"):
        # overrides may come after options too: `otmap train R --quiet train.steps=5`
        bad = [item for item in extra if "=" not in item or item.startswith("-")]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        args.overrides += extra
        if args.command == "train" and args.recipe is not None and "=" in args.recipe:
            args.overrides.insert(0, args.recipe)
            args.recipe = None
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except OTMapError as err:
        print(f"otmap: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
