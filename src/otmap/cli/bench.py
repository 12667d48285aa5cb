"""``otmap bench``: fit a ground-truth pair (``gaussian``, ``brenier``, ``w2b``) and score it, or
time the training loop (``speed``, :mod:`otmap.experiments.speed`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from otmap.cli._common import single_process
from otmap.errors import OTMapError
from otmap.experiments import speed

#: the ground-truth pairs and what each is
PAIRS = {"gaussian": "a Gaussian pair (closed-form affine map)",
         "brenier": "a Gaussian mixture pushed by a known convex potential's gradient",
         "w2b": "the continuous Wasserstein-2 benchmark's Mix3toMix10 pairs"}


def _l2_uvp_targets(text: str) -> list[float]:
    """``--target-l2-uvp`` values: one number or a comma list, each finite and >= 0 (%)."""
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected L2-UVP values in %, >= 0, as a number or a "
                                         f"comma list such as 1,0.5; got {text!r}")
    return values


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` and its subcommands with ``subparsers`` (``parser.add_subparsers()``)."""
    bench = subparsers.add_parser("bench", help="benchmarks: ground-truth pairs, training speed")
    kinds = bench.add_subparsers(dest="pair", required=True)
    for pair, text in PAIRS.items():
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
        p.add_argument("--eval-every", type=int, default=None,
                       help="evaluate (and log) every N steps (default: train.eval_every's "
                            "default); how finely --target-l2-uvp is timed")
        p.add_argument("--target-l2-uvp", type=_l2_uvp_targets, action="append", default=[],
                       metavar="X[,X...]",
                       help="also report seconds_to_target and step_to_target: the run's wall "
                            "time and step at its first evaluation with L2-UVP <= X %% (null "
                            "if none); repeatable")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto")
        p.add_argument("--out", default=None, help="also write a run folder here")
        p.add_argument("--json", action="store_true", help="last line: one JSON object")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=run)

    p = kinds.add_parser("speed", help="steps/s and peak memory of the toy, vector and image "
                                       "recipes against a plain reference-style loop")
    p.add_argument("--cases", default=",".join(speed.DEFAULT_CASES),
                   help=f"comma-separated cases from {', '.join(speed.CASES)} "
                        f"(default: {','.join(speed.DEFAULT_CASES)}; mnist needs data/mnist)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per measurement (default: per case, "
                        + ", ".join(f"{k} {c.steps}" for k, c in speed.CASES.items()) + ")")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the measuring processes (default: torch's)")
    p.add_argument("--precision", default="auto", metavar="P[,P...]",
                   help="train.precision of otmap's loop: auto (default: the recipe's run's "
                        "choice), fp32 or bf16, or a comma list such as fp32,auto to measure "
                        "each (JSON keys then end in _<precision>); the plain loop runs in fp32")
    p.add_argument("--profile", type=int, nargs="?", const=speed.PROFILE_STEPS, default=0,
                   metavar="STEPS",
                   help="also profile STEPS more of otmap's steps per case (default "
                        f"{speed.PROFILE_STEPS}) and list the top {speed.PROFILE_TOP} operators "
                        "by self CPU time with their share of the step")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run_speed)
    return bench


def _bench_one(args: argparse.Namespace, dim: int) -> dict:
    """Fit one ground-truth pair with ``otmap.fit``'s defaults; its summary with the forward
    (and, for quadratic costs, inverse) scores and the linear baseline's."""
    from otmap.experiments import runner
    from otmap.experiments.config import RunConfig
    from otmap.train.config import TrainConfig

    options = {} if args.steps is None else {"steps": args.steps}
    if args.eval_every is not None:
        options.update(eval_every=args.eval_every, log_every=args.eval_every)
    train = TrainConfig(seed=args.seed, device=args.device, **options)
    spec = {"name": args.pair, "dim": dim, "seed": args.seed}
    if getattr(args, "root", None) is not None:
        spec["root"] = args.root
    out = args.out if args.out is None or not getattr(args, "all", False) else f"{args.out}/{dim}"
    config = RunConfig(name=f"bench-{args.pair}-{dim}", benchmark=spec, train=train)
    targets = [x for values in args.target_l2_uvp for x in values]
    _, summary = runner.run(config, out, progress=not args.quiet, target_l2_uvp=targets)
    summary.update({"pair": args.pair, "dim": dim})
    return summary


def _bench_line(summary: dict) -> str:
    inverse = (f"  inverse L2-UVP {summary['inverse_l2_uvp']:.3f}%"
               if "inverse_l2_uvp" in summary else "")
    reached = [f"L2-UVP <= {x}%: " + ("not reached" if seconds is None else
                                      f"{seconds:.1f} s (step {summary['step_to_target'][x]})")
               for x, seconds in summary.get("seconds_to_target", {}).items()]
    return (f"{summary['pair']} dim {summary['dim']}: L2-UVP {summary['l2_uvp']:.3f}%  "
            f"cos {summary['cos']:.4f}{inverse}  ({summary['steps']} steps, "
            f"{summary['seconds']:.0f} s); linear (Bures) baseline L2-UVP "
            f"{summary['bures_l2_uvp']:.3f}%" + "".join(f"; {r}" for r in reached))


def run(args: argparse.Namespace) -> int:
    """Handler of ``otmap bench gaussian|brenier|w2b``: one line per dimension (``--all``: and
    the published table), or with ``--json`` the summary as the last line."""
    single_process("bench")
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


def run_speed(args: argparse.Namespace) -> int:
    """``otmap bench speed``: :func:`otmap.experiments.speed.speed_bench` on the chosen cases
    and precisions; a table (and with ``--profile`` the profiles) on stderr; with ``--json``
    the result as the last line of stdout."""
    single_process("bench speed")
    cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    precisions = [name.strip() for name in args.precision.split(",") if name.strip()]
    result = speed.speed_bench(cases, args.steps, args.device, args.threads,
                               precisions=precisions, profile=args.profile,
                               progress=not args.quiet)
    print(speed.format_table(result), file=sys.stderr)
    if args.profile:
        print(speed.format_profile(result), file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0
