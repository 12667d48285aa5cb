"""Schedules: callables ``step -> value`` for learning-rate multipliers and cost parameters.

Each is a small frozen dataclass, so it pickles and can be written to a config as a dict
(:func:`build_schedule` reads ``{"name": ..., **kwargs}``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass

from otmap.errors import InputError
from otmap.utils.registry import Registry

Schedule = Callable[[int], float]

#: the built-in schedules by name
SCHEDULES: Registry[Schedule] = Registry("schedule")


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant:
    """``value`` at every step."""

    value: float = 1.0

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

    def __call__(self, step: int) -> float:
        t = min(max(step / max(self.steps, 1), 0.0), 1.0)
        return self.start + t * (self.end - self.start)


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine:
    """Linear warm-up over ``warmup`` steps, then cosine decay from 1 to ``final`` at ``total``."""

    total: int
    final: float = 0.0
    warmup: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("multistep")
@dataclass(frozen=True)
class MultiStep:
    """``factor ** (number of milestones <= step)`` (KNOT: milestones 15k..70k, factor 0.5)."""

    milestones: tuple[int, ...]
    factor: float = 0.5

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
    if isinstance(spec, int | float):
        return Constant(float(spec))
    if isinstance(spec, dict):
        kwargs = {key: value for key, value in spec.items() if key != "name"}
        if "milestones" in kwargs:
            kwargs["milestones"] = tuple(kwargs["milestones"])
        name = spec.get("name")
        schedule = SCHEDULES.make(name, **kwargs)
        try:  # a non-numeric argument fails here, not mid-training
            first = schedule(0)
        except TypeError:
            first = None
        if isinstance(first, bool) or not isinstance(first, numbers.Real):
            raise InputError(f"bad arguments for schedule {name}: {kwargs} are not all "
                             f"numbers; pass numbers for {sorted(kwargs)}")
        return schedule
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
