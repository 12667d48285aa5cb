"""Schedules: callables ``step -> value`` for learning-rate multipliers and cost parameters.

Each is a small frozen dataclass, so it pickles and can be written to a config as a dict
(:func:`build_schedule` reads ``{"name": ..., **kwargs}``). Each checks its arguments when
built (values are numbers, step counts whole numbers), so a bad one fails at once, with an
:class:`~otmap.errors.InputError` naming the fix, and not mid-training.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass

from otmap.errors import InputError
from otmap.utils.checks import check_int
from otmap.utils.registry import Registry

Schedule = Callable[[int], float]

#: the built-in schedules by name
SCHEDULES: Registry[Schedule] = Registry("schedule")

#: how :func:`_steps` and ``milestones`` errors say what a step count is
_STEPS_FIX = "whole numbers of training steps"


def _number(schedule: str, field: str, value: object) -> None:
    """InputError unless ``value`` is a real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"schedule {schedule}: {field} must be a number, got {value!r}: "
                         f"pass numbers for {field}")


def _steps(schedule: str, field: str, value: object, minimum: int) -> int:
    """``value`` as a step count ``>= minimum`` (an int; bools and floats are refused)."""
    return check_int(f"schedule {schedule}: {field}", value, minimum,
                     f"pass numbers for {field} ({_STEPS_FIX})")


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant:
    """``value`` at every step."""

    value: float = 1.0

    def __post_init__(self) -> None:
        _number("constant", "value", self.value)

    def __call__(self, step: int) -> float:
        return self.value


@SCHEDULES.register("linear_ramp")
@dataclass(frozen=True)
class LinearRamp:
    """From ``start`` to ``end`` linearly over ``steps``, then ``end`` (NOT's gamma ramp:
    ``LinearRamp(0, 0.66, 25000)``)."""

    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        _number("linear_ramp", "start", self.start)
        _number("linear_ramp", "end", self.end)
        object.__setattr__(self, "steps", _steps("linear_ramp", "steps", self.steps, 1))

    def __call__(self, step: int) -> float:
        t = min(max(step / self.steps, 0.0), 1.0)
        return self.start + t * (self.end - self.start)


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine:
    """Linear warm-up over ``warmup`` steps, then cosine decay from 1 to ``final`` at ``total``."""

    total: int
    final: float = 0.0
    warmup: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", _steps("cosine", "total", self.total, 1))
        _number("cosine", "final", self.final)
        object.__setattr__(self, "warmup", _steps("cosine", "warmup", self.warmup, 0))
        if self.warmup > self.total:
            raise InputError(f"schedule cosine: warmup={self.warmup} is longer than "
                             f"total={self.total}, where the decay ends: pass warmup <= total")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("multistep")
@dataclass(frozen=True)
class MultiStep:
    """``factor ** (number of milestones <= step)`` (KNOT: milestones 15k..70k, factor 0.5);
    ``milestones`` is a list or tuple of steps, kept as a tuple."""

    milestones: tuple[int, ...]
    factor: float = 0.5

    def __post_init__(self) -> None:
        milestones = self.milestones
        if not isinstance(milestones, list | tuple) or any(
                isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0
                for m in milestones):
            raise InputError(f"schedule multistep: milestones must be a list of steps such as "
                             f"[15000, 30000], got {milestones!r}: pass numbers for milestones "
                             f"({_STEPS_FIX}, >= 0)")
        object.__setattr__(self, "milestones", tuple(int(m) for m in milestones))
        _number("multistep", "factor", self.factor)

    def __call__(self, step: int) -> float:
        return self.factor ** sum(step >= m for m in self.milestones)


def build_schedule(spec: float | str | dict | Schedule | None, default: float = 1.0,
                   total_steps: int | None = None) -> Schedule:
    """A schedule from a number (constant), ``{"name": ..., **kwargs}``, a callable, None
    (``default``), or a bare name: ``"constant"`` (``default``) or ``"cosine"`` (from 1 to 0
    over ``total_steps``)."""
    if spec is None or spec == "constant":
        return Constant(default)
    if spec == "cosine" and total_steps is not None:
        return Cosine(total_steps)
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return Constant(float(spec))
    if isinstance(spec, dict):  # each schedule checks its arguments when built
        kwargs = {key: value for key, value in spec.items() if key != "name"}
        return SCHEDULES.make(spec.get("name"), **kwargs)
    if callable(spec):
        return spec
    raise InputError(f"a schedule is a number, a dict or a callable step -> value, got {spec!r}")


def schedule_config(schedule: Schedule) -> dict | str:
    """The dict :func:`build_schedule` reads back, or the repr of a user callable."""
    for name, cls in SCHEDULES.items():
        if isinstance(schedule, cls):
            return {"name": name, **asdict(schedule)}
    return repr(schedule)


__all__ = ["Schedule", "Constant", "LinearRamp", "Cosine", "MultiStep", "SCHEDULES",
           "build_schedule", "schedule_config"]
