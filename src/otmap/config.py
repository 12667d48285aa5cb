"""Typed configuration: :class:`TrainConfig` (the solver's and trainer's options) and
:class:`RunConfig` (a whole experiment: data, cost, networks, training), read from YAML recipes
with ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from otmap.errors import InputError


@dataclass
class TrainConfig:
    """Options of the solver and the training loop (one *step* = ``k_map`` map updates and one
    potential update). The defaults are the ones ``otmap.fit`` uses for vector data;
    ``k_map=None`` is chosen from the map (see :func:`otmap.api.default_k_map`).

    ``batch_size`` is per process under torchrun; ``precision``, ``channels_last`` and
    ``compile`` are the speed options of :mod:`otmap.train.acceleration`."""

    steps: int = 3000
    batch_size: int = 256
    k_map: int | None = None
    num_samples: int | None = None
    potential_all_samples: bool = False
    lr_map: float = 1e-3
    lr_potential: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    lr_schedule: Any = "cosine"
    ema_decay: float | None = None
    grad_clip: float | None = None
    gradient_optimality: float = 0.0
    gradient_penalty: float = 0.0
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 1000
    eval_samples: int = 2000
    precision: str = "auto"
    channels_last: Any = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        for name in ("steps", "batch_size", "k_map", "num_samples", "log_every", "eval_every",
                     "checkpoint_every", "eval_samples"):
            value = getattr(self, name)
            if value is None and name in ("num_samples", "k_map"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"train.{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise InputError("train.batch_size must be at least 2")
        for name in ("lr_map", "lr_potential"):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"train.{name} must be positive, got {getattr(self, name)!r}")


@dataclass
class RunConfig:
    """A whole experiment. ``source``/``target`` are data specs (``{"toy": name, ...}``,
    ``{"file": path}``, ``{"dataset": ...}``), or both come from ``benchmark``
    (``{"name": "gaussian", "dim": 16}``). ``test`` is an image data spec with ground truth for
    restoration and translation runs (see :mod:`otmap.restoration`)."""

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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> RunConfig:
        data = dict(data)
        _check_keys(data, [f.name for f in fields(cls)], where)
        train = data.pop("train", None) or {}
        if not isinstance(train, dict):
            raise InputError(f"{where}: 'train' must be a mapping, got {train!r}")
        _check_keys(train, [f.name for f in fields(TrainConfig)], f"{where}: train")
        try:
            return cls(**data, train=TrainConfig(**train))
        except TypeError as err:
            raise InputError(f"{where}: {err}") from None


def _check_keys(data: dict, valid: list[str], where: str) -> None:
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(valid)}"
            raise InputError(f"{where}: unknown key {key!r}{hint}")


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
