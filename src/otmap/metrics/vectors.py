"""Metrics between vector samples and for transport maps.

Map-quality conventions follow the Wasserstein-2 benchmark (Korotin et al., 2021):
``l2_uvp`` is the unexplained variance percentage of the map error and ``cos`` the cosine
similarity of the predicted and true displacements. Sample tensors have shape [n, d];
images [n, *dims] are flattened to [n, prod(dims)]. Every function returns a Python float
except ``total_variance`` (a 0-d tensor) and ``exact_ot_assignment`` (an index tensor).
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from otmap.errors import InputError
from otmap.utils.checks import check_positive, check_positive_int

__all__ = [
    "cos",
    "energy_distance",
    "exact_ot_assignment",
    "exact_ot_cost",
    "l2_uvp",
    "sliced_w2",
    "total_variance",
    "transport_cost",
]

EXACT_OT_WARN_POINTS = 5000
_EMD_MAX_ITER = 10_000_000
_CHUNK_ELEMENTS = 1 << 22


def _flat(name: str, x: object) -> Tensor:
    """Check that ``x`` is a finite [n, *dims] tensor with n >= 1; return it as [n, D]."""
    if not isinstance(x, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor of shape [n, d], got {type(x).__name__}; "
            "convert it with torch.as_tensor."
        )
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(
            f"{name} must have shape [n, d] or [n, *dims] with n >= 1, got {tuple(x.shape)}; "
            "reshape 1-D data with x[:, None]."
        )
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or Inf values; remove or fix those samples.")
    return x.reshape(x.shape[0], -1)


def _same_width(names: str, a: Tensor, b: Tensor) -> None:
    """Require flattened samples ``a`` and ``b`` to have the same number of coordinates."""
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"{names} must have the same number of coordinates per sample, got "
            f"{a.shape[1]} and {b.shape[1]}; pass samples of the same space."
        )


def _same_shape(names: str, a: Tensor, b: Tensor) -> None:
    """Require flattened ``a`` and ``b`` to be paired: same [n, D]."""
    if a.shape != b.shape:
        raise InputError(
            f"{names} must be paired samples of the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)} (after flattening); evaluate both on the same inputs x."
        )


def total_variance(samples: Tensor) -> Tensor:
    """Trace of the covariance of [n, d] samples: sum_k Var(x_k), biased (divides by n)."""
    x = _flat("samples", samples)
    return x.var(dim=0, unbiased=False).sum()


def _variance_value(target_variance: float | Tensor) -> float:
    """Var(nu) from a float, a 0-d tensor, or a tensor of target samples [n, d]."""
    if isinstance(target_variance, Tensor) and target_variance.ndim > 0:
        value = float(total_variance(target_variance))
    else:
        value = float(target_variance)
    return check_positive("target_variance", value,
                          fix="pass the target samples or total_variance(target_samples)")


def l2_uvp(predicted: Tensor, truth: Tensor, target_variance: float | Tensor) -> float:
    """L2 unexplained variance percentage: 100 * E|T_hat(x) - T*(x)|^2 / Var(nu).

    ``predicted`` and ``truth`` are [n, d] maps of the same inputs; ``target_variance`` is
    Var(nu) as a float or a tensor of target samples (its ``total_variance`` is used).
    """
    p = _flat("predicted", predicted)
    t = _flat("truth", truth)
    _same_shape("predicted and truth", p, t)
    mse = (p.double() - t.double()).pow(2).sum(dim=1).mean().item()
    return 100.0 * mse / _variance_value(target_variance)


def cos(x: Tensor, predicted: Tensor, truth: Tensor) -> float:
    """Cosine of the displacements: E<T*(x)-x, T_hat(x)-x> / sqrt(E|T*(x)-x|^2 E|T_hat(x)-x|^2).

    Returns 0.0 when either displacement is identically zero (e.g. the identity map).
    """
    x0 = _flat("x", x).double()
    p = _flat("predicted", predicted).double()
    t = _flat("truth", truth).double()
    _same_shape("x and predicted", x0, p)
    _same_shape("x and truth", x0, t)
    dp, dt = p - x0, t - x0
    denominator = math.sqrt(dt.pow(2).sum(1).mean().item() * dp.pow(2).sum(1).mean().item())
    if denominator == 0.0:
        return 0.0
    return (dt * dp).sum(1).mean().item() / denominator


def _quantile_w2_sq(pa: Tensor, pb: Tensor) -> Tensor:
    """Exact 1-D W2^2 per row between uniform empirical measures: [P, n], [P, m] -> [P].

    Integrates |F_a^-1(t) - F_b^-1(t)|^2 over t in (0, 1) on the merged breakpoints
    {i/n} U {j/m} where both quantile functions are constant; for n == m this is the
    mean squared difference of the sorted samples.
    """
    n, m = pa.shape[1], pb.shape[1]
    sa, sb = pa.sort(dim=1).values, pb.sort(dim=1).values
    kw = {"dtype": torch.float64, "device": pa.device}
    levels = torch.cat([torch.arange(1, n + 1, **kw) / n, torch.arange(1, m + 1, **kw) / m])
    levels = levels.unique()
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    middle = levels - widths / 2
    ia = (middle * n).floor().long().clamp_(max=n - 1)
    ib = (middle * m).floor().long().clamp_(max=m - 1)
    return ((sa[:, ia].double() - sb[:, ib].double()).pow(2) * widths).sum(dim=1)


def sliced_w2(
    a: Tensor,
    b: Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced W2: sqrt(mean_theta W2^2(<a, theta>, <b, theta>)) over random unit directions.

    ``a`` [n, d] and ``b`` [m, d] may have different sizes: the 1-D W2^2 is computed exactly
    between the empirical quantile functions (no subsampling). Directions are drawn from the
    torch global RNG, or from ``generator`` (on its device) when given.
    """
    xa = _flat("a", a)
    xb = _flat("b", b)
    _same_width("a and b", xa, xb)
    n_projections = check_positive_int("n_projections", n_projections)
    dtype = torch.promote_types(xa.dtype, xb.dtype)
    device = xa.device if generator is None else generator.device
    theta = torch.randn(n_projections, xa.shape[1], generator=generator, device=device)
    theta = (theta / theta.norm(dim=1, keepdim=True)).to(device=xa.device, dtype=dtype)
    w2_sq = _quantile_w2_sq(theta @ xa.to(dtype).T, theta @ xb.to(device=xa.device, dtype=dtype).T)
    return math.sqrt(w2_sq.mean().item())


def _distance_sum(x: Tensor, y: Tensor) -> float:
    """Sum of all Euclidean distances |x_i - y_j|, in row chunks of bounded memory."""
    rows = max(1, _CHUNK_ELEMENTS // y.shape[0])
    total = 0.0
    for start in range(0, x.shape[0], rows):
        block = torch.cdist(x[start : start + rows], y, compute_mode="donot_use_mm_for_euclid_dist")
        total += block.sum(dtype=torch.float64).item()
    return total


def energy_distance(a: Tensor, b: Tensor, unbiased: bool = True) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| between samples a [n, d] and b [m, d].

    ``unbiased``: within-set terms are U-statistics (diagonal excluded), so the estimate is
    unbiased and may be slightly negative for samples of the same distribution. Otherwise
    V-statistics (diagonal included): always >= 0, with a finite-sample floor of order
    ``1/n`` that two independent samples of one distribution also show, which makes ratios
    to that floor meaningful. Needs n, m >= 2.
    """
    xa = _flat("a", a)
    xb = _flat("b", b).to(xa.device)
    _same_width("a and b", xa, xb)
    n, m = xa.shape[0], xb.shape[0]
    if n < 2 or m < 2:
        raise InputError(
            f"energy_distance needs at least 2 samples in each set, got {n} and {m}; "
            "pass more samples."
        )
    dtype = torch.promote_types(xa.dtype, xb.dtype)
    xa, xb = xa.to(dtype), xb.to(dtype)
    cross = _distance_sum(xa, xb) / (n * m)
    within_a = _distance_sum(xa, xa) / (n * (n - 1) if unbiased else n * n)
    within_b = _distance_sum(xb, xb) / (m * (m - 1) if unbiased else m * m)
    return 2.0 * cross - within_a - within_b


def transport_cost(x: Tensor, y: Tensor) -> float:
    """Mean transport cost of paired samples: mean_i 1/2 |x_i - y_i|^2."""
    x0 = _flat("x", x)
    y0 = _flat("y", y)
    _same_shape("x and y", x0, y0)
    return 0.5 * (x0.double() - y0.double()).pow(2).sum(dim=1).mean().item()


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


def _weights(name: str, weights: Tensor | np.ndarray | None, n: int) -> np.ndarray:
    """Probability vector [n]: uniform when ``weights`` is None, else normalised to sum 1."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = torch.as_tensor(weights).detach().cpu().double()
    if w.shape != (n,):
        raise InputError(
            f"{name} must have shape [{n}] (one weight per sample), got {tuple(w.shape)}."
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or w.sum().item() <= 0:
        raise InputError(
            f"{name} must be finite, non-negative and have a positive sum; fix the weights."
        )
    return (w / w.sum()).numpy()


def _pot() -> ModuleType:
    """POT (Python Optimal Transport), imported on first use: it takes seconds to import and
    only the exact-OT metrics need it (``pip install 'otmap[exact]'``)."""
    try:
        import ot
    except ImportError as err:
        raise InputError(
            "exact_ot_cost and exact_ot_assignment need POT (Python Optimal Transport): pip "
            "install 'otmap[exact]' (or pip install pot); sliced_w2 and energy_distance compare "
            "samples without it."
        ) from err
    return ot


def _cost_matrix(a: Tensor, b: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a [n, d], b [m, d]; return them as float64 arrays with M_ij = 1/2|a_i - b_j|^2."""
    xa = _flat("a", a)
    xb = _flat("b", b)
    _same_width("a and b", xa, xb)
    points = max(xa.shape[0], xb.shape[0])
    if points > EXACT_OT_WARN_POINTS:
        warnings.warn(
            f"exact OT on {points} points is O(n^3) in time and O(n^2) in memory; "
            "subsample or use sliced_w2 / energy_distance for large sets.",
            stacklevel=3,
        )
    na, nb = _numpy(xa), _numpy(xb)
    return na, nb, 0.5 * _pot().dist(na, nb, metric="sqeuclidean")


def exact_ot_cost(
    a: Tensor,
    b: Tensor,
    a_weights: Tensor | np.ndarray | None = None,
    b_weights: Tensor | np.ndarray | None = None,
) -> float:
    """Exact discrete OT cost min_pi sum_ij pi_ij 1/2|a_i - b_j|^2 (network simplex, ot.emd2).

    Weights default to uniform and are normalised to sum 1. Warns above 5000 points.
    """
    na, nb, cost = _cost_matrix(a, b)
    wa = _weights("a_weights", a_weights, na.shape[0])
    wb = _weights("b_weights", b_weights, nb.shape[0])
    return float(_pot().emd2(wa, wb, cost, numItermax=_EMD_MAX_ITER))


def exact_ot_assignment(a: Tensor, b: Tensor) -> Tensor:
    """Optimal permutation sigma [n] (long, on a's device): a_i -> b_sigma(i) minimises the
    total squared distance. ``a`` and ``b`` must have the same number of samples."""
    na, nb, cost = _cost_matrix(a, b)
    if na.shape[0] != nb.shape[0]:
        raise InputError(
            f"exact_ot_assignment needs equally many samples, got {na.shape[0]} and "
            f"{nb.shape[0]}; use exact_ot_cost for unequal sizes."
        )
    uniform = np.full(na.shape[0], 1.0 / na.shape[0])
    plan = _pot().emd(uniform, uniform, cost, numItermax=_EMD_MAX_ITER)
    return torch.as_tensor(plan.argmax(axis=1), dtype=torch.long, device=a.device)
