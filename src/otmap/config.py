"""Typed configuration: :class:`TrainConfig` (the solver's and trainer's options) and
:class:`RunConfig` (a whole experiment: data, cost, networks, training), read from YAML recipes
with ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from otmap.errors import InputError
from otmap.train.loggers import check_logger_names


@dataclass
class TrainConfig:
    """Options of the solver and the training loop (one *step* = ``k_map`` map updates and one
    potential update). The defaults are the ones ``otmap.fit`` uses for vector data;
    ``k_map=None`` is chosen from the map (see :func:`otmap.api.default_k_map`).

    ``batch_size`` is per process under torchrun; ``precision``, ``channels_last`` and
    ``compile`` are the speed options of :mod:`otmap.train.acceleration`; ``loggers`` and
    ``plot_every`` say where metrics and pictures go (:mod:`otmap.train.loggers`)."""

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
    #: backends of :mod:`otmap.train.loggers` ("jsonl" is always on; "tensorboard", "wandb")
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    #: plots/latest/ is redrawn at every evaluation; a copy plots/step-XXXXXX/ every
    #: ``plot_every`` evaluations
    plot_every: int = 5
    precision: str = "auto"
    channels_last: Any = "auto"
    compile: bool = False
    #: checkpoints/best.pt: "auto" (the run's headline metric, see AUTO_BEST_METRICS, else
    #: fidelity), a name of METRIC_GOALS, or "min:NAME" / "max:NAME"
    best_metric: str = "auto"
    #: non-finite losses: "stop", "rollback" (to the last checkpoint, learning rates times
    #: rollback_lr_factor, new streams; at most max_rollbacks times) or "auto" (rollback for
    #: images, stop for vectors)
    on_divergence: str = "auto"
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    #: also write a checkpoint every this many minutes of wall time (None: only by steps)
    checkpoint_minutes: float | None = None
    #: keep the last K checkpoints as checkpoints/step-XXXXXXXX.pt (0: last.pt only)
    keep_checkpoints: int = 0

    def __post_init__(self) -> None:
        _check_recovery_options(self)
        self.betas = _betas(self.betas)
        for name in ("steps", "batch_size", "k_map", "num_samples", "log_every", "eval_every",
                     "checkpoint_every", "eval_samples", "plot_every"):
            value = getattr(self, name)
            if value is None and name in ("num_samples", "k_map"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"train.{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise InputError("train.batch_size must be at least 2")
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool) or not (
                0 <= self.seed < 2**63):
            raise InputError(f"train.seed must be an integer in [0, 2**63), got {self.seed!r}")
        self.seed = int(self.seed)
        for name in ("lr_map", "lr_potential"):
            setattr(self, name, _number(name, getattr(self, name),
                                        "positive (a finite number such as 1e-3)",
                                        lambda v: v > 0))
        for name in ("weight_decay", "gradient_optimality", "gradient_penalty"):
            setattr(self, name, _number(name, getattr(self, name),
                                        "a finite number >= 0 (0 turns it off)",
                                        lambda v: v >= 0))
        if self.grad_clip is not None:
            self.grad_clip = _number(
                "grad_clip", self.grad_clip,
                "a positive finite number such as 10, or None for no clipping", lambda v: v > 0)
        if self.ema_decay is not None:
            self.ema_decay = _number("ema_decay", self.ema_decay,
                                     "a number in (0, 1) such as 0.999, or None for no EMA",
                                     lambda v: 0 < v < 1)
        for name in ("potential_all_samples", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"train.{name} must be true or false, got "
                                 f"{getattr(self, name)!r}")
        _check_device(self.device)
        self.loggers = check_logger_names(self.loggers)


def _number(name: str, value: Any, expected: str, valid: Callable[[float], bool]) -> float:
    """``train.<name>`` as a finite float for which ``valid`` holds (numeric strings such as
    YAML's ``1e-3`` are read as numbers), else :class:`InputError` saying it must be
    ``expected``."""
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or not math.isfinite(number) or not valid(number):
        raise InputError(f"train.{name} must be {expected}, got {value!r}")
    return number


def _betas(value: Any) -> tuple[float, float]:
    """Adam's ``train.betas`` as two floats in [0, 1), else :class:`InputError`."""
    expected = "two numbers in [0, 1) such as [0.5, 0.9]"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise InputError(f"train.betas must be {expected}, got {value!r}")
    first, second = (_number("betas", b, expected, lambda v: 0 <= v < 1) for b in value)
    return first, second


def _check_device(device: Any) -> None:
    """``train.device``: ``"auto"``, a torch device string (``"cpu"``, ``"cuda:1"``) or a
    :class:`torch.device`; else :class:`InputError`."""
    if isinstance(device, torch.device) or device == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got "
                         f"{device!r}") from None


#: held-out metrics ``train.best_metric`` may name, and whether lower or higher is better
METRIC_GOALS = {"fidelity": "min", "energy": "min", "l2_uvp": "min", "fid": "min",
                "psnr": "max", "ssim": "max", "target_class_share": "max", "cos": "max"}
#: ``best_metric="auto"``: the first of these that a run logs (its headline metric), else
#: ``fidelity``
AUTO_BEST_METRICS = ("l2_uvp", "psnr", "target_class_share")
#: ``train.on_divergence``: ``auto`` is ``rollback`` for images and ``stop`` for vectors
ON_DIVERGENCE = ("auto", "stop", "rollback")


def metric_goal(spec: str) -> tuple[str, str]:
    """``train.best_metric`` (not ``auto``) as ``(metric, "min" | "max")``: a name of
    :data:`METRIC_GOALS`, or ``min:NAME`` / ``max:NAME`` for an evaluator's own metric."""
    goal, sep, name = str(spec).partition(":")
    if sep and goal in ("min", "max") and name:
        return name, goal
    if spec in METRIC_GOALS:
        return spec, METRIC_GOALS[spec]
    raise InputError(f"train.best_metric must be 'auto', one of {sorted(METRIC_GOALS)}, or "
                     f"'min:NAME' / 'max:NAME' for an evaluator's metric, got {spec!r}")


def _check_recovery_options(config: TrainConfig) -> None:
    """The best-checkpoint, divergence-recovery and checkpoint-frequency options."""
    if config.best_metric != "auto":
        metric_goal(config.best_metric)
    if config.on_divergence not in ON_DIVERGENCE:
        raise InputError(f"train.on_divergence must be one of {list(ON_DIVERGENCE)}, got "
                         f"{config.on_divergence!r}")
    for name in ("max_rollbacks", "keep_checkpoints"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"train.{name} must be an integer >= 0, got {value!r}")
    config.rollback_lr_factor = _number(
        "rollback_lr_factor", config.rollback_lr_factor,
        "a number in (0, 1] (the learning rates are multiplied by it at each rollback)",
        lambda v: 0 < v <= 1)
    if config.checkpoint_minutes is not None:
        config.checkpoint_minutes = _number(
            "checkpoint_minutes", config.checkpoint_minutes,
            "a positive number of minutes or None", lambda v: v > 0)


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
