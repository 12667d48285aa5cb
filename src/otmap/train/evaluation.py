"""What every training run measures on held-out samples, and the monitors that judge it.

* :func:`held_out_metrics`: energy distance and fidelity of the pushforward, transport cost,
  diversity of a stochastic map; :func:`linear_fidelity`: the same fidelity for the linear OT
  map between moment-matched Gaussians, the bar a deterministic vector map must clear;
* :class:`OscillationDetector` (NOT's fake solutions) and :class:`DivergenceMonitor` (the
  fidelity drifting away from the best seen).

Task-specific evaluators (PSNR/SSIM, FID, target class) live in
:mod:`otmap.experiments.evaluation`; the metric functions in :mod:`otmap.metrics`.
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import Tensor, nn

from otmap.benchmarks.gaussian import BuresMap
from otmap.errors import InputError
from otmap.metrics import energy_distance, transport_cost
from otmap.model.result import TransportResult

FAKE_SOLUTION_ADVICE = (
    "the pushforward's fidelity keeps swinging instead of settling: the saddle-point "
    "optimisation is likely cycling between fake solutions (Korotin et al., KNOT). Remedies: "
    "use the kernel cost (cost=WeakKernel, kernel='distance'), lower gamma (or ramp it "
    "with a schedule), or raise k_map (more map updates per potential update)"
)


class OscillationDetector:
    """Flags a metric that keeps swinging over the last ``window`` evaluations.

    Meant for the fidelity ratio (1 = as close to the target as a second target sample). It
    fires when the window reaches above ``level`` (the pushforward is then clearly off: noise
    and slow convergence at a few times the floor are not fake solutions), its range exceeds a
    factor ``ratio``, and it is not a monotone trend: at least half of its successive
    differences change sign. A metric that decreases and settles never fires. On the seeds'
    half-circles -> square toy at gamma 1 it fires for the weak quadratic cost (fidelity
    swinging 6-86) and not for the kernel cost (1.5-8.8), see docs/benchmarks.md.
    """

    def __init__(self, window: int = 6, ratio: float = 3.0, level: float = 8.0) -> None:
        if window < 4:
            raise ValueError("the oscillation window needs at least 4 evaluations")
        self.values: deque[float] = deque(maxlen=window)
        self.log_ratio, self.log_level = math.log(ratio), math.log(level)
        self.fired = False

    def update(self, value: float) -> bool:
        """Add one evaluation (a positive metric); True when it looks like oscillation."""
        if not (value > 0 and math.isfinite(value)):
            return False
        self.values.append(math.log(value))
        if len(self.values) < self.values.maxlen:
            return False
        v = list(self.values)
        diffs = [b - a for a, b in zip(v[:-1], v[1:])]
        flips = sum(d1 * d2 < 0 for d1, d2 in zip(diffs[:-1], diffs[1:]))
        swinging = (max(v) > self.log_level and max(v) - min(v) > self.log_ratio
                    and flips >= len(diffs) / 2)
        self.fired = self.fired or swinging
        return swinging


DIVERGENCE_ADVICE = (
    "Remedies: lower lr_map and lr_potential (e.g. by 3x), raise k_map (the map must keep up "
    "with the potential), set grad_clip, or train fewer steps"
)


def significantly_worse(value: float, best: float, factor: float = 2.0,
                        margin: float = 0.5) -> bool:
    """Whether a fidelity ratio ``value`` is clearly worse than ``best``: not finite, or above
    ``factor`` times it and more than ``margin`` above it (fidelity ratios near 1 move by
    ~0.1-0.3 from sampling noise alone)."""
    return not math.isfinite(value) or (value > factor * best and value - best > margin)


class DivergenceMonitor:
    """Watches the held-out fidelity ratio (lower is better, ~1 perfect) of any map.

    It fires when the fidelity has risen at each of the last ``rises`` evaluations and is now
    :func:`significantly_worse` than the best seen: the map is drifting away from the target, not
    just jittering. ``best`` and ``best_step`` name the best evaluation so far.
    """

    def __init__(self, rises: int = 3, factor: float = 2.0) -> None:
        if rises < 1:
            raise ValueError("rises must be at least 1")
        self.values: deque[float] = deque(maxlen=rises + 1)
        self.factor = factor
        self.best, self.best_step = math.inf, -1
        self.fired = False

    def update(self, step: int, value: float) -> bool:
        """Add the evaluation at ``step``; True when it shows divergence."""
        if not math.isfinite(value):
            self.values.append(math.inf)
            self.fired = True
            return True
        if value < self.best:
            self.best, self.best_step = value, step
        self.values.append(value)
        v = list(self.values)
        rising = len(v) == self.values.maxlen and all(b > a for a, b in zip(v[:-1], v[1:]))
        diverging = rising and significantly_worse(value, self.best, self.factor)
        self.fired = self.fired or diverging
        return diverging


@torch.no_grad()
def held_out_metrics(result: TransportResult, embedding: nn.Module, x: Tensor, y: Tensor,
                     floor: float) -> dict[str, float]:
    """Held-out metrics of ``result``'s map on source samples ``x`` and target samples ``y``.

    * ``energy``: energy distance of T#(mu x S) (one z per x) to ``y``;
    * ``fidelity``: the same (V-statistic) divided by ``floor``, the energy distance between two
      independent target samples of this size: ~1 means as close as the target to itself;
    * ``transport_cost``: ``mean 1/2 |Q(x) - T(x, z)|^2`` (where Q(x) and T(x) have one shape);
    * ``diversity`` (stochastic maps): mean over x of the total variance of ``T(x, .)``.
    """
    tx = result.transport(x)
    out = {"energy": energy_distance(tx, y),
           "fidelity": energy_distance(tx, y, unbiased=False) / floor}
    qx = embedding(x)
    if qx.shape == tx.shape:
        out["transport_cost"] = transport_cost(qx, tx)
    if result.map.stochastic:
        txz = result.transport(x[:256], num_samples=8)
        out["diversity"] = txz.var(1).flatten(1).sum(1).mean().item()
    return out


@torch.no_grad()
def linear_fidelity(x: Tensor, y: Tensor, y_fit: Tensor, floor: float) -> float | None:
    """Fidelity (as in :func:`held_out_metrics`) of the linear (Bures) OT map between Gaussians
    moment-matched to ``x`` and ``y_fit`` (a second target sample), scored on ``y``; None when
    the moments are degenerate."""
    try:
        linear = BuresMap.fit(x.cpu().double(), y_fit.cpu().double())
    except InputError:
        return None
    tx = linear(x.cpu().double()).to(y.device, y.dtype)
    return energy_distance(tx, y, unbiased=False) / floor
