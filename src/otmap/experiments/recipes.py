"""Named experiments: YAML files shipped in ``otmap/recipes``."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

import yaml

from otmap.errors import InputError
from otmap.experiments.config import RunConfig, apply_overrides, load_yaml

DEFAULT_RECIPE = "gaussian-8blobs"


def _folder() -> Path:
    return Path(str(resources.files("otmap") / "recipes"))


def recipe_names() -> list[str]:
    """Names of the built-in recipes, sorted."""
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def describe_recipes() -> list[tuple[str, str]]:
    """(name, one-line description) of each built-in recipe."""
    out = []
    for name in recipe_names():
        data = yaml.safe_load((_folder() / f"{name}.yaml").read_text()) or {}
        lines = str(data.get("description", "")).strip().splitlines()
        out.append((name, lines[0] if lines else ""))
    return out


def load_run_config(recipe_or_path: str | None, overrides: list[str] = ()) -> RunConfig:
    """A :class:`RunConfig` from a recipe name or a YAML path, with ``key=value`` overrides."""
    name = recipe_or_path or DEFAULT_RECIPE
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = _folder() / f"{name}.yaml"
        if not path.is_file():
            close = difflib.get_close_matches(name, recipe_names(), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(f"unknown recipe {name!r}: {hint}list them with `otmap recipes`, "
                             "or pass the path of a YAML file")
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    apply_overrides(data, list(overrides))
    return RunConfig.from_dict(data, where=str(path.name))
