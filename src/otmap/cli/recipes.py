"""``otmap recipes``: list the built-in recipes."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``recipes`` with ``subparsers`` (``parser.add_subparsers()``)."""
    p = subparsers.add_parser("recipes", help="list the built-in recipes")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``otmap recipes``: one line per recipe, its name and what it does."""
    from otmap.experiments.recipes import describe_recipes

    rows = describe_recipes()
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    return 0
