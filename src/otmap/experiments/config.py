"""A whole experiment as one typed object: :class:`RunConfig` (data, cost, networks, training),
read from YAML recipes with ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from otmap.errors import InputError
from otmap.train.config import TrainConfig
from otmap.utils.checks import check_keys


@dataclass
class RunConfig:
    """A whole experiment. ``source``/``target`` are data specs (``{"toy": name, ...}``,
    ``{"file": path}``, ``{"dataset": ...}``), or both come from ``benchmark``
    (``{"name": "gaussian", "dim": 16}``). ``test`` is an image data spec with ground truth for
    restoration and translation runs (see :mod:`otmap.experiments.evaluation`)."""

    name: str = "run"
    description: str = ""
    source: dict | None = None
    target: dict | None = None
    benchmark: dict | None = None
    test: dict | None = None
    cost: Any = None
    map: dict | None = None
    potential: dict | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for key in ("name", "description"):  # YAML reads name: 2024 as a number
            value = getattr(self, key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(self, key, str(value))
            elif not isinstance(value, str):
                raise InputError(f"{key} must be a string, got {value!r}: e.g. {key}: my-run")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> RunConfig:
        data = dict(data)
        check_keys(data, [f.name for f in fields(cls)], where)
        train = data.pop("train", None) or {}
        if not isinstance(train, dict):
            raise InputError(f"{where}: 'train' must be a mapping, got {train!r}")
        check_keys(train, [f.name for f in fields(TrainConfig)], f"{where}: train")
        try:
            return cls(**data, train=TrainConfig(**train))
        except TypeError as err:
            raise InputError(f"{where}: {err}") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} is not key=value (e.g. train.steps=500)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise InputError(f"override {item!r}: {part!r} is not a mapping")
        node[parts[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with a clear error for missing files and bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"config file {path} does not exist; list the recipes with `otmap recipes`"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a YAML mapping of config keys")
    return data
