"""The ``otmap`` command line: ``train``, ``recipes``, ``bench``, ``sweep``, ``sample``, ``eval``,
``apply``; one module per command, each with ``add_parser(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from otmap.cli import apply, bench, eval, recipes, sample, sweep, train
from otmap.errors import OTMapError, QualityWarning

#: the commands in the order ``otmap --help`` lists them
COMMANDS = (train, recipes, sweep, sample, eval, apply, bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``otmap`` parser; each command's ``func`` is its module's handler."""
    parser = argparse.ArgumentParser(prog="otmap", description="Neural optimal transport maps.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``otmap ARGV`` (default: ``sys.argv[1:]``); the exit code: the command's, or 2 for
    an :class:`~otmap.errors.OTMapError` (printed as ``otmap: error: ...``)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if "overrides" in vars(args):
        # overrides may come after options too: `otmap train R --quiet train.steps=5`
        bad = [item for item in extra if "=" not in item or item.startswith("-")]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with warnings.catch_warnings():  # printed already, as "otmap: warning: ..."
            warnings.simplefilter("ignore", QualityWarning)
            return args.func(args)
    except OTMapError as err:
        print(f"otmap: error: {err}", file=sys.stderr)
        return 2

