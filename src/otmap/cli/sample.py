"""``otmap sample``: draw samples from a trained generative map."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otmap.errors import OTMapError
from otmap.model.checkpoint import CHECKPOINT_HELP


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sample`` with ``subparsers`` (``parser.add_subparsers()``)."""
    p = subparsers.add_parser("sample", help="draw samples T(x) from a trained generative map")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True, help="FILE.png (image grid), .pt or .npy")
    p.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trusted", action="store_true",
                   help="allow checkpoints holding pickled custom modules")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``otmap sample``: write ``--n`` samples as a PNG grid, ``.npy`` or ``.pt``."""
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
