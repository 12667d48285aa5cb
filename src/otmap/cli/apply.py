"""``otmap apply``: map every image file in a folder with a trained image -> image map
(:func:`otmap.experiments.apply.apply_folder`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from otmap.experiments.apply import ON_ERROR, apply_folder
from otmap.model.checkpoint import CHECKPOINT_HELP


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``apply`` with ``subparsers`` (``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "apply", help="map every image file in a folder with a trained image -> image map",
        description="Map every image file (.png .jpg .jpeg .bmp .webp, any case) under --input "
                    "(recursively) with a trained image -> image map and write PNGs under "
                    "--output at the same relative paths. Inputs of any size are converted to "
                    "the model's channels and resized (bicubic) to its resolution; outputs are "
                    "at the model's resolution. Unreadable files are skipped and listed "
                    "(--on-error skip) or stop the run (--on-error fail; outputs already "
                    "written stay).")
    p.add_argument("run", metavar="RUN_OR_CKPT", help="run folder or checkpoint file")
    p.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    p.add_argument("--input", required=True, metavar="DIR", help="folder of input images")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="folder for the PNG outputs (created if missing; not the input folder)")
    p.add_argument("--samples", type=int, default=None, metavar="K",
                   help="stochastic maps: K draws per input, written as NAME_s0.png .. "
                        "NAME_s{K-1}.png (default: one draw, NAME.png)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B",
                   help="images mapped at once (default: 64)")
    p.add_argument("--on-error", choices=ON_ERROR, default="skip",
                   help="unreadable image files: skip and list them (default) or fail")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--seed", type=int, default=0, help="seed of a stochastic map's noise")
    p.add_argument("--trusted", action="store_true",
                   help="allow checkpoints holding pickled custom modules")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``otmap apply``: what was written (and skipped) on stderr, the summary less
    ``skip_reasons`` as JSON."""
    import torch

    from otmap.model.result import load
    from otmap.train.distributed import resolve_device

    result = load(args.run, device=resolve_device(args.device), trusted=args.trusted,
                  checkpoint=args.checkpoint)
    torch.manual_seed(args.seed)
    summary = apply_folder(result, args.input, args.output, samples=args.samples,
                           batch_size=args.batch_size, on_error=args.on_error,
                           progress=not args.quiet)
    h, w = summary["size"]
    print(f"wrote {summary['n_written']} PNG files ({h}x{w}) for {summary['n_images']} of "
          f"{summary['n_files']} images to {summary['output_dir']}", file=sys.stderr)
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable file(s):", file=sys.stderr)
        for path in summary["skipped"]:
            print(f"  {path} ({summary['skip_reasons'][path]})", file=sys.stderr)
    print(json.dumps({k: v for k, v in summary.items() if k != "skip_reasons"}))
    return 0
