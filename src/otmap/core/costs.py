"""Transport costs and their sample estimators.

A cost sees a batch of (embedded) inputs ``x`` of shape ``[B, *dims]`` and, for each input,
``K`` candidate outputs ``ys`` of shape ``[B, K, *dims]`` (``K = 1`` for a deterministic map).
``cost(x, ys)`` returns the per-input estimate ``C_hat(x, {y_k})`` of shape ``[B]``.

Scale convention. ``reduction="sum"`` sums over coordinates (the papers' formulas, e.g.
``1/2 |x - y|^2``); ``reduction="mean"`` divides that by ``D`` (the reference image code). The
optimal map does not change under a positive rescaling of the cost; ``scale`` multiplies the whole
cost so that a recipe can reproduce a paper's exact setting (e.g. NOT's code uses ``2 C / D``:
``StrongQuadratic(reduction="mean", scale=2)``). Default reductions: ``"sum"`` for vectors,
``"mean"`` for images (chosen by :func:`default_reduction`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from otmap.core.schedules import Schedule, build_schedule, schedule_config
from otmap.errors import InputError
from otmap.utils.checks import check_choice, check_positive, check_real
from otmap.utils.registry import Registry

Reduction = Literal["sum", "mean"]
_LAST_STEP = 2**62  # a step after every built-in schedule has reached its final value

#: the built-in costs by class name, with snake_case aliases
COSTS: Registry[Cost] = Registry("cost", otherwise="pass a callable c(x, y) -> [N]")


def default_reduction(sample_shape: tuple[int, ...]) -> Reduction:
    """``"sum"`` for vectors ``(d,)``, ``"mean"`` for images ``(c, h, w)``."""
    return "sum" if len(sample_shape) <= 1 else "mean"


class Cost:
    """Base class: ``__call__(x [B, *dims], ys [B, K, *dims]) -> [B]``.

    Subclasses implement :meth:`estimate`. ``min_samples`` is the smallest ``K`` the estimator
    accepts (1 for strong costs, 2 for weak costs that estimate a variance).
    """

    min_samples: int = 1

    def __init__(self, reduction: Reduction = "sum", scale: float = 1.0) -> None:
        self.reduction: Reduction = check_choice("reduction", reduction, ("sum", "mean"))
        self.scale = check_positive("cost scale", scale)

    def reduce(self, t: Tensor, start_dim: int) -> Tensor:
        """Sum or average ``t`` over all dimensions from ``start_dim`` on."""
        t = t.flatten(start_dim)
        return t.sum(-1) if self.reduction == "sum" else t.mean(-1)

    def estimate(self, x: Tensor, ys: Tensor) -> Tensor:
        raise NotImplementedError

    def inverse(self, y: Tensor, grad_f: Tensor) -> Tensor:
        """The input ``x`` at which ``y`` is optimal, ``grad_y c(x, y) = grad f(y)`` (the
        map step's stationarity condition), for costs where it has one solution."""
        raise InputError(f"{type(self).__name__} has no closed-form inverse map; inverse() "
                         "needs StrongQuadratic or InnerProduct")

    def _per_coordinate(self, y: Tensor) -> float:
        """``D / scale`` for ``"mean"``, ``1 / scale`` for ``"sum"``: undoes the reduction."""
        return (math.prod(y.shape[1:]) if self.reduction == "mean" else 1) / self.scale

    def set_step(self, step: int) -> None:
        """Advance scheduled parameters (e.g. gamma) to training step ``step``."""

    def __call__(self, x: Tensor, ys: Tensor) -> Tensor:
        if ys.dim() != x.dim() + 1 or ys.shape[0] != x.shape[0] or ys.shape[2:] != x.shape[1:]:
            raise InputError(
                f"{type(self).__name__}: expected x [B, *dims] and ys [B, K, *dims], got "
                f"x {tuple(x.shape)} and ys {tuple(ys.shape)}; the cost sees the embedded input "
                "Q(x), so pass an embedding that maps the source to the target's shape"
            )
        if ys.shape[1] < self.min_samples:
            raise InputError(
                f"{type(self).__name__} needs at least {self.min_samples} samples per input "
                f"to be unbiased, got K={ys.shape[1]}: raise num_samples"
            )
        return self.scale * self.estimate(x, ys)

    def config(self) -> dict:
        """A plain dict from which :func:`build_cost` rebuilds this cost."""
        return {"name": type(self).__name__, "reduction": self.reduction, "scale": self.scale}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


@COSTS.register("StrongQuadratic", aliases=("quadratic", "strong_quadratic"))
class StrongQuadratic(Cost):
    """``c(x, y) = 1/2 |x - y|^2``; estimate ``mean_k c(x, y_k)``."""

    def estimate(self, x: Tensor, ys: Tensor) -> Tensor:
        return 0.5 * self.reduce((ys - x.unsqueeze(1)) ** 2, 2).mean(1)

    def inverse(self, y: Tensor, grad_f: Tensor) -> Tensor:
        """``x = y - grad f(y)`` (times ``D / scale`` or ``1 / scale``)."""
        return y - self._per_coordinate(y) * grad_f


@COSTS.register("InnerProduct", aliases=("inner_product",))
class InnerProduct(Cost):
    """OTM's form ``c(x, y) = -<x, y>``: the same optimal maps as the quadratic cost
    (the potential absorbs ``1/2 |y|^2``), but a different potential."""

    def estimate(self, x: Tensor, ys: Tensor) -> Tensor:
        return -self.reduce(ys * x.unsqueeze(1), 2).mean(1)

    def inverse(self, y: Tensor, grad_f: Tensor) -> Tensor:
        """``x = -grad f(y)`` (times ``D / scale`` or ``1 / scale``): here ``-f`` is the
        convex Brenier potential of the inverse map."""
        return -self._per_coordinate(y) * grad_f


def _checked_gamma(gamma: float | str | dict | Schedule) -> Schedule:
    """The weak costs' ``gamma`` as a schedule, checked to be a finite number >= 0 at step 0
    and, for the built-in schedules, at their end (:class:`InputError` otherwise)."""
    schedule = build_schedule(gamma)
    checked = [schedule(0)]
    if isinstance(schedule_config(schedule), dict):  # a built-in schedule: its end is known
        checked.append(schedule(_LAST_STEP))
    origin = "" if isinstance(gamma, int | float) else f" (from the schedule {gamma!r})"
    for value in checked:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value >= 0):
            raise InputError(
                f"gamma must be a finite number >= 0, got {value!r}{origin}: the NOT "
                "and KNOT papers (Korotin et al., ICLR 2023) state their results for gamma >= 0; "
                "use 0 for the strong cost or a positive value such as NOT's 0.66, "
                "e.g. LinearRamp(0, 0.66, 25000)")
    return schedule


@COSTS.register("WeakQuadratic", aliases=("weak_quadratic",))
class WeakQuadratic(Cost):
    """NOT's gamma-weak quadratic cost ``C(x, nu) = 1/2 E_nu|x - y|^2 - gamma/2 Var(nu)``.

    Unbiased from ``K >= 2`` samples: ``1/2 mean_k |x - y_k|^2 - gamma/2 * sum_k |y_k - y_bar|^2
    / (K - 1)``. ``gamma = 0`` is :class:`StrongQuadratic`. ``gamma`` may be a schedule
    ``step -> value`` (NOT ramps it from 0 to 0.66 over 25k steps); the solver calls
    :meth:`Cost.set_step`.
    """

    min_samples = 2

    def __init__(self, gamma: float | Schedule = 1.0, reduction: Reduction = "sum",
                 scale: float = 1.0) -> None:
        super().__init__(reduction, scale)
        self.gamma_schedule = _checked_gamma(gamma)
        self.gamma = self.gamma_schedule(0)

    def set_step(self, step: int) -> None:
        self.gamma = float(self.gamma_schedule(step))

    def estimate(self, x: Tensor, ys: Tensor) -> Tensor:
        strong = 0.5 * self.reduce((ys - x.unsqueeze(1)) ** 2, 2).mean(1)
        variance = self.reduce((ys - ys.mean(1, keepdim=True)) ** 2, 2).sum(1) / (ys.shape[1] - 1)
        return strong - 0.5 * self.gamma * variance

    def config(self) -> dict:
        return {**super().config(), "gamma": schedule_config(self.gamma_schedule)}


@COSTS.register("WeakKernel", aliases=("weak_kernel", "kernel"))
class WeakKernel(Cost):
    """KNOT's gamma-weak kernel cost with feature map ``u`` of a kernel ``k``:

    ``C(x, nu) = 1/2 E|u(x) - u(y)|^2 - gamma/2 * 1/2 E|u(y) - u(y')|^2``, where
    ``|u(a) - u(b)|^2 = k(a, a) + k(b, b) - 2 k(a, b) = d_k(a, b)`` is, with ``r = |a - b|``
    (the norm follows ``reduction``: ``sqrt(mean_D (a - b)^2)`` for ``"mean"``):

    * ``"distance"`` (distance-induced, characteristic for ``0 < alpha < 2``): ``r^alpha``, so
      ``C = 1/2 E|x - y|^alpha - gamma/4 E|y - y'|^alpha``; ``alpha = 2`` gives
      :class:`WeakQuadratic` back;
    * ``"gaussian"``: ``2 - 2 exp(-r^2 / (2 sigma^2))``;
    * ``"laplacian"``: ``2 - 2 exp(-r / sigma)``.

    Unbiased from ``K >= 2`` samples: the second expectation runs over pairs ``y_i != y_j``.
    """

    min_samples = 2
    KERNELS = ("distance", "gaussian", "laplacian")

    def __init__(self, gamma: float | Schedule = 1.0, kernel: str = "distance", alpha: float = 1.0,
                 sigma: float = 1.0, reduction: Reduction = "sum", scale: float = 1.0) -> None:
        super().__init__(reduction, scale)
        self.kernel = check_choice("kernel", kernel, self.KERNELS)
        self.alpha = check_real("alpha", alpha, above=0, at_most=2,
                                fix="other powers do not give a valid kernel")
        self.sigma = check_positive("sigma", sigma)
        self.gamma_schedule = _checked_gamma(gamma)
        self.gamma = self.gamma_schedule(0)

    def set_step(self, step: int) -> None:
        self.gamma = float(self.gamma_schedule(step))

    def feature_distance(self, squared_norm: Tensor) -> Tensor:
        """``d_k = |u(a) - u(b)|^2`` from ``|a - b|^2`` (reduced over coordinates)."""
        if self.kernel == "gaussian":
            return 2 - 2 * torch.exp(-squared_norm / (2 * self.sigma**2))
        power = self.alpha / 2 if self.kernel == "distance" else 0.5
        # r^p with a finite gradient at r = 0 (where the value is exactly 0)
        root = torch.where(squared_norm > 0, squared_norm.clamp_min(1e-30) ** power,
                           torch.zeros_like(squared_norm))
        return root if self.kernel == "distance" else 2 - 2 * torch.exp(-root / self.sigma)

    def estimate(self, x: Tensor, ys: Tensor) -> Tensor:
        k = ys.shape[1]
        to_x = self.feature_distance(self.reduce((ys - x.unsqueeze(1)) ** 2, 2)).mean(1)
        flat = ys.flatten(2)
        pair_sq = (flat.unsqueeze(1) - flat.unsqueeze(2)) ** 2  # [B, K, K, D]
        pairs = self.feature_distance(pair_sq.sum(-1) if self.reduction == "sum"
                                      else pair_sq.mean(-1))
        # the diagonal pairs are 0 (d(y, y) = 0 for every kernel): sum over y != y' pairs
        spread = pairs.sum((1, 2)) / (k * (k - 1))
        return 0.5 * to_x - 0.25 * self.gamma * spread

    def config(self) -> dict:
        return {**super().config(), "gamma": schedule_config(self.gamma_schedule),
                "kernel": self.kernel, "alpha": self.alpha, "sigma": self.sigma}


class FromCallable(Cost):
    """A user cost ``fn(x [N, *dims], y [N, *dims]) -> [N]``, averaged over the K samples.

    ``reduction`` is not applied (``fn`` returns one number per pair); ``scale`` is.
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], scale: float = 1.0) -> None:
        super().__init__("sum", scale)
        if not callable(fn):
            raise InputError(f"FromCallable needs a callable c(x, y) -> [N], got {type(fn)}")
        self.fn = fn

    def estimate(self, x: Tensor, ys: Tensor) -> Tensor:
        b, k = ys.shape[:2]
        xs = x.unsqueeze(1).expand_as(ys).reshape(b * k, *x.shape[1:])
        c = self.fn(xs, ys.reshape(b * k, *ys.shape[2:]))
        if c.shape != (b * k,):
            raise InputError(
                f"the cost function must return one value per pair, shape ({b * k},), "
                f"got {tuple(c.shape)}: reduce over coordinates inside the function"
            )
        return c.view(b, k).mean(1)

    def config(self) -> dict:
        return {"name": "FromCallable", "fn": getattr(self.fn, "__qualname__", repr(self.fn)),
                "scale": self.scale}


def build_cost(spec: str | dict | Cost | Callable | None, sample_shape: tuple[int, ...]) -> Cost:
    """A :class:`Cost` from a name, a config dict, a Cost, a callable ``c(x, y)``, or None
    (the quadratic cost with the default reduction for ``sample_shape``)."""
    if isinstance(spec, Cost):
        return spec
    if spec is None:
        spec = {}
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        return COSTS.build({"name": "StrongQuadratic", "reduction": default_reduction(sample_shape),
                            **spec})
    if callable(spec):
        return FromCallable(spec)
    raise InputError(f"cost must be a name, dict, Cost or callable, got {type(spec).__name__}")


__all__ = ["Cost", "StrongQuadratic", "InnerProduct", "WeakQuadratic", "WeakKernel",
           "FromCallable", "build_cost", "default_reduction"]
