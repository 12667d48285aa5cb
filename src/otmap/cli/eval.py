"""``otmap eval``: held-out metrics (FID) of a trained generative map."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from otmap.errors import OTMapError
from otmap.model.checkpoint import CHECKPOINT_HELP


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` with ``subparsers`` (``parser.add_subparsers()``)."""
    p = subparsers.add_parser("eval", help="held-out metrics of a trained generative map (FID)")
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``otmap eval``: the FID line on stderr, the summary as JSON."""
    import torch

    from otmap.experiments.evaluation import evaluate_generator
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
