"""Typed training options: :class:`TrainConfig` (the solver's and the training loop's
options, the ``train:`` section of a recipe)."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from otmap.core.config import SolverConfig
from otmap.errors import InputError
from otmap.train.loggers import check_logger_names
from otmap.utils.checks import (
    check_bool,
    check_int,
    check_keys,
    check_number,
    check_positive_int,
)


@dataclass
class TrainConfig(SolverConfig):
    """Options of a training run: the solver's (:class:`~otmap.core.config.SolverConfig`, passed
    whole to the solver) and the loop's, flat as in a recipe's ``train:`` section. The defaults
    are the ones ``otmap.fit`` uses for vector data; ``fit`` resolves ``k_map=None`` from the map
    and the data (see :func:`otmap.train.fit.default_k_map`).

    ``batch_size`` is per process under torchrun; ``seed`` and ``device`` set the run's
    :class:`~otmap.train.runtime.Runtime`; ``precision``, ``channels_last`` and ``compile`` are
    the speed options of :mod:`otmap.train.acceleration`; ``loggers`` and ``plot_every`` say
    where metrics and pictures go (:mod:`otmap.train.loggers`)."""

    batch_size: int = 256
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
        super().__post_init__()
        _check_recovery_options(self)
        for name in ("batch_size", "log_every", "eval_every", "checkpoint_every",
                     "eval_samples", "plot_every"):
            check_positive_int(f"train.{name}", getattr(self, name))
        if self.batch_size < 2:
            raise InputError("train.batch_size must be at least 2")
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool) or not (
                0 <= self.seed < 2**63):
            raise InputError(f"train.seed must be an integer in [0, 2**63), got {self.seed!r}")
        self.seed = int(self.seed)
        check_bool("train.compile", self.compile)
        _check_device(self.device)
        self.loggers = check_logger_names(self.loggers)

    @classmethod
    def build(cls, config: TrainConfig | dict | None = None, where: str = "fit",
              **overrides: Any) -> TrainConfig:
        """A :class:`TrainConfig` from a config (or the mapping of a recipe's ``train:``
        section, or None for the defaults) with ``overrides`` replacing fields; unknown names
        raise :class:`InputError` with a did-you-mean hint."""
        names = [f.name for f in fields(cls)]
        check_keys(overrides, names, where)
        if config is None or isinstance(config, dict):
            check_keys(dict(config or {}), names, where)
            return cls(**{**(config or {}), **overrides})
        if not isinstance(config, TrainConfig):
            raise InputError(f"{where}: config must be an otmap.TrainConfig or a mapping of its "
                             f"fields, got {type(config).__name__}")
        return dataclasses.replace(config, **overrides) if overrides else config


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
        check_int(f"train.{name}", getattr(config, name), 0)
    config.rollback_lr_factor = check_number(
        "rollback_lr_factor", config.rollback_lr_factor,
        "a number in (0, 1] (the learning rates are multiplied by it at each rollback)",
        lambda v: 0 < v <= 1)
    if config.checkpoint_minutes is not None:
        config.checkpoint_minutes = check_number(
            "checkpoint_minutes", config.checkpoint_minutes,
            "a positive number of minutes or None", lambda v: v > 0)
