"""The solver's options as one object: :class:`SolverConfig`, passed whole to
:class:`~otmap.core.solver.NeuralOT` (the training loop's :class:`~otmap.train.config.TrainConfig`
extends it, so a recipe's ``train:`` section declares each option once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otmap.errors import InputError
from otmap.utils.checks import check_bool, check_number, check_positive_int


@dataclass
class SolverConfig:
    """Options of the saddle-point solver. One *step* is ``k_map`` map updates and one
    potential update; ``num_samples`` is K, the samples ``T(x, z_k)`` per input in a map update.

    ``k_map=None``: 10 map updates per potential update for deterministic maps, 5 for
    stochastic ones (``otmap.fit`` also uses 5 for images). ``num_samples=None``: 1 for
    deterministic maps, ``max(4, cost.min_samples)`` for stochastic ones.
    ``lr_map=None``/``lr_potential=None``: 1e-3, which ``otmap.fit`` lowers for vector data of
    high dimension (:func:`~otmap.core.solver.default_lr`).
    ``potential_all_samples``: the potential update sees all K samples per input (else one,
    as in the reference code). ``lr_schedule`` multiplies both learning rates: a schedule spec
    (``"cosine"`` from 1 to 0 over ``steps``, ``"constant"``, ``{"name": ..., ...}``) or a
    callable ``step -> factor``. ``gradient_optimality``, ``gradient_penalty`` and ``expectile``
    weigh the regularisers of :mod:`otmap.core.regularizers` (0 turns them off);
    ``expectile_tau`` is the expectile regulariser's asymmetry. ``ema_decay``: keep a
    bias-corrected exponential average of the map's weights after every map update (evaluated
    and returned in place of the raw map); its horizon is about ``1 / (1 - ema_decay)`` map
    updates, so short runs want a smaller decay."""

    steps: int = 3000
    k_map: int | None = None
    num_samples: int | None = None
    potential_all_samples: bool = False
    lr_map: float | None = None
    lr_potential: float | None = None
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    lr_schedule: Any = "cosine"
    ema_decay: float | None = None
    grad_clip: float | None = None
    gradient_optimality: float = 0.0
    gradient_penalty: float = 0.0
    expectile: float = 0.0
    expectile_tau: float = 0.99

    def __post_init__(self) -> None:
        for name in ("steps", "k_map", "num_samples"):
            value = getattr(self, name)
            if value is not None or name == "steps":
                check_positive_int(f"train.{name}", value)
        self.betas = _betas(self.betas)
        for name in ("lr_map", "lr_potential"):
            if getattr(self, name) is not None:
                setattr(self, name, check_number(name, getattr(self, name),
                                                 "positive (a finite number such as 1e-3), or "
                                                 "None for the default", lambda v: v > 0))
        for name in ("weight_decay", "gradient_optimality", "gradient_penalty", "expectile"):
            setattr(self, name, check_number(name, getattr(self, name),
                                             "a finite number >= 0 (0 turns it off)",
                                             lambda v: v >= 0))
        self.expectile_tau = check_number("expectile_tau", self.expectile_tau,
                                          "a number in (0.5, 1) such as 0.99",
                                          lambda v: 0.5 < v < 1)
        if self.grad_clip is not None:
            self.grad_clip = check_number(
                "grad_clip", self.grad_clip,
                "a positive finite number such as 10, or None for no clipping", lambda v: v > 0)
        if self.ema_decay is not None:
            self.ema_decay = check_number("ema_decay", self.ema_decay,
                                          "a number in (0, 1) such as 0.999, or None for no EMA",
                                          lambda v: 0 < v < 1)
        check_bool("train.potential_all_samples", self.potential_all_samples)


def _betas(value: Any) -> tuple[float, float]:
    """Adam's ``train.betas`` as two floats in [0, 1), else :class:`InputError`."""
    expected = "two numbers in [0, 1) such as [0.5, 0.9]"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise InputError(f"train.betas must be {expected}, got {value!r}")
    first, second = (check_number("betas", b, expected, lambda v: 0 <= v < 1) for b in value)
    return first, second


__all__ = ["SolverConfig"]
