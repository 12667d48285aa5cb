"""``otmap eval``: held-out metrics (FID) of a trained generative map."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from otmap.errors import InputError, OTMapError
from otmap.model.checkpoint import CHECKPOINT_HELP


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` with ``subparsers`` (``parser.add_subparsers()``)."""
    p = subparsers.add_parser("eval", help="held-out metrics of a trained generative map (FID)")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("--fid", action="store_true", help="FID to held-out real images")
    p.add_argument("--n", type=int, default=1000, help="number of samples")
    p.add_argument("--features", default="digits", choices=["digits", "pixels-random", "inception"],
                   help="the first feature space (default: otmap's digit classifier of the "
                        "dataset); fixed random pixel features (pixels-random) are always "
                        "scored too")
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
    part = _reference_part(args.reference_part) if args.reference_part else None
    kwargs = {"weights_path": args.inception_weights} if args.features == "inception" else {}
    summary = evaluate_generator(result, n=args.n, features=args.features,
                                 reference_part=part, **kwargs)
    for key, name in (("fid", "features"), ("fid_pixels", "features_pixels")):
        print(f"FID {summary[key]:.2f} ({summary[name]}) against {summary['n_reference']} "
              f"held-out images ({summary['n_real']} real images: "
              f"{summary[f'{key}_real']:.2f} +- {summary[f'{key}_real_std']:.2f}, "
              f"ratio {summary[f'{key}_ratio']:.2f})", file=sys.stderr)
    if "classes_covered" in summary:
        print(f"{summary['classes_covered']} classes covered (share >= "
              f"{summary['coverage_min_share']:.3f}), counts {summary['class_counts']}",
              file=sys.stderr)
    print(json.dumps(summary))
    return 0


def _reference_part(text: str) -> tuple[float, float]:
    """``"START,END"`` -> ``(START, END)``; InputError naming the format otherwise."""
    try:
        start, end = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--reference-part must be START,END fractions, e.g. 0.8,1, got "
                         f"{text!r}") from None
    return start, end
