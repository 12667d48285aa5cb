"""What every training run measures on held-out samples, and the monitors that judge it.

* :func:`held_out_metrics`: energy distance and fidelity of the pushforward, transport cost,
  diversity of a stochastic map; :func:`linear_fidelity`: the same fidelity for the linear OT
  map between moment-matched Gaussians, the bar a deterministic vector map must clear;
* :class:`OscillationDetector` (NOT's fake solutions) and :class:`DivergenceMonitor` (the
  fidelity drifting away from the best seen), each against the run's own evaluation noise
  (:func:`log_noise`).

Task-specific evaluators (PSNR/SSIM, FID, target class) live in
:mod:`otmap.experiments.evaluation`; the metric functions in :mod:`otmap.metrics`.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Sequence
from statistics import median

import torch
from torch import Tensor, nn

from otmap.benchmarks.gaussian import BuresMap
from otmap.errors import InputError
from otmap.metrics import energy_distance, transport_cost
from otmap.model.result import TransportResult
from otmap.utils.checks import check_int, check_positive, check_positive_int, check_real

FAKE_SOLUTION_ADVICE = (
    "the pushforward's fidelity keeps swinging instead of settling: the saddle-point "
    "optimisation is likely cycling between fake solutions (Korotin et al., KNOT). Remedies: "
    "use the kernel cost (cost=WeakKernel, kernel='distance'), lower gamma (or ramp it "
    "with a schedule), or raise k_map (more map updates per potential update)"
)


def _largest_rise(values: list[float]) -> float:
    """``max_{i < j} (values[j] - values[i])`` (0 when nothing rises): the largest rise from
    an earlier value to a later one, in one pass over the running minimum."""
    lowest, rise = math.inf, 0.0
    for value in values:
        rise, lowest = max(rise, value - lowest), min(lowest, value)
    return rise


#: ``Phi^{-1}(3/4)``: the median of ``|e|`` for ``e ~ N(0, s^2)`` is ``s`` times this
_MEDIAN_ABS_NORMAL = 0.6744897501960817
_LOG_FLOAT_MAX = math.log(sys.float_info.max)


def log_noise(logs: Sequence[float], lag: int = 1, order: int = 1, centred: bool = False,
              least: int = 3) -> float:
    """Robust scale of the evaluation noise of log-values ``l_i`` (0 with fewer than ``least``
    differences). With ``d`` the ``order``-th differences at ``lag`` (``d_i = l_i - l_{i-lag}``
    for order 1, ``l_i - 3 l_{i-lag} + 3 l_{i-2 lag} - l_{i-3 lag}`` for order 3) and
    ``c = median(d)`` (``centred``, which removes a steady trend) or ``c = 0``,

        sigma = median_i |d_i - c| / (0.6745 * sqrt(binom(2 order, order))),

    consistent for ``l_i = signal + e_i`` with independent ``e_i ~ N(0, sigma^2)`` where the
    differences cancel the signal (``binom(2m, m) sigma^2`` is the variance of an m-th
    difference of the noise): a few outliers or a short rise move the median little."""
    d = list(logs)
    for _ in range(order):
        d = [b - a for a, b in zip(d, d[lag:])]
    if len(d) < least:
        return 0.0
    c = median(d) if centred else 0.0
    scale = _MEDIAN_ABS_NORMAL * math.sqrt(math.comb(2 * order, order))
    return median(abs(x - c) for x in d) / scale


class OscillationDetector:
    """Flags a metric that swings up and down over the last ``window`` evaluations.

    Meant for the fidelity ratio (1 = as close to the target as a second target sample).
    With ``l_k = log(value_k)`` over the window, the largest rise and the largest fall

        R = max_{i<j} (l_j - l_i),    F = max_{i<j} (l_i - l_j)

    must both exceed ``max(log(ratio), noise * sigma)``, and ``max_k l_k > log(level)`` (the
    pushforward is then clearly off: noise and slow convergence at a few times the floor are
    not fake solutions). ``sigma`` is the run's own evaluation noise, over every evaluation
    so far once there are ``NOISE_HISTORY`` (before that 0, the ratio rule alone):

        sigma = min(log_noise(l, order=3), min_{L = 1, 2, 3} log_noise(l, lag=L))

    (:func:`log_noise`): what neither a smooth curve (third differences cancel any parabola,
    so a swing over 8 or more evaluations leaves them little) nor a level or a swing with a
    period of 2 or 3 evaluations (lag-L differences cancel what repeats every L evaluations)
    explains, while pure noise gives each the same scale. A plateau whose evaluations
    scatter by 30 % then needs a swing of ``e^{7 * 0.3} = 8x`` both ways, not 3x; below 15 %
    the ratio rule alone applies. The swing must go both ways within the window, at any speed
    (with the defaults a clean 10x swing with a cycle of 2-8 evaluations fires; longer cycles
    need a longer window). A monotone trend, noisy or not, gives only one of R and F, so
    noise alone must move the fidelity by the threshold against the trend; a damped
    oscillation whose rises stay under ``ratio`` never fires. On the seeds' half-circles ->
    square toy at gamma 1 it fires for the weak quadratic cost (fidelity swinging 6-86) and
    not for the kernel cost (1.5-8.8), see docs/benchmarks.md. ``fired`` stays set once it
    has fired; ``noise=0`` turns the noise term off. With ``noise`` 7, 2.7 % of 40-evaluation
    runs on a plateau at 10 scattering by 30 % alarm (18.6 % without the noise term), 1.3 %
    after their first 7 evaluations, and every swing of tests/train/test_evaluation.py still
    fires.
    """

    #: evaluations before ``sigma`` is trusted: a run that swings from its first evaluation
    #: has no quiet stretch to measure the noise on and must fire on the ratio rule alone (the
    #: weak-cost runs and the 8-evaluation swing of tests/train/test_evaluation.py do by the
    #: 7th evaluation)
    NOISE_HISTORY = 8

    def __init__(self, window: int = 6, ratio: float = 3.0, level: float = 8.0,
                 noise: float = 7.0) -> None:
        window = check_int("OscillationDetector window", window, 3,
                           "a rise and a fall need at least 3 evaluations")
        ratio = check_real("OscillationDetector ratio", ratio, above=1,
                           fix="the factor a swing must span both ways, e.g. 3")
        level = check_positive("OscillationDetector level", level,
                               "the fidelity a swing must reach, e.g. 8")
        self.noise = check_real("OscillationDetector noise", noise, at_least=0,
                                fix="how many noise scales a swing must span, e.g. 7")
        self.values: deque[float] = deque(maxlen=window)
        self.history: list[float] = []  # log of every evaluation so far
        self.log_ratio, self.log_level = math.log(ratio), math.log(level)
        self.fired = False

    def sigma(self) -> float:
        """The evaluation noise (in log) of the history, 0 while it is shorter than
        ``NOISE_HISTORY``."""
        if len(self.history) < self.NOISE_HISTORY:
            return 0.0
        return min(log_noise(self.history, order=3),
                   *(log_noise(self.history, lag) for lag in (1, 2, 3)))

    def update(self, value: float) -> bool:
        """Add one evaluation (a positive metric); True when it looks like oscillation."""
        if not (value > 0 and math.isfinite(value)):
            return False
        self.values.append(math.log(value))
        self.history.append(math.log(value))
        if len(self.values) < self.values.maxlen:
            return False
        v = list(self.values)
        rise, fall = _largest_rise(v), _largest_rise([-x for x in v])
        bar = max(self.log_ratio, self.noise * self.sigma())
        swinging = max(v) > self.log_level and min(rise, fall) > bar
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

    With ``v_t`` the value at evaluation t, each earlier evaluation counts toward the bar no
    lower than its nearer neighbour allows (the median of it and its two neighbours, less a
    tolerance ``jitter``), and the bar never drops below the floor:

        h_i = max(v_i, min(v_{i-1}, v_{i+1}) / jitter),    b_t = max(floor, min_{i<t} h_i)

    (``h_0`` has the one neighbour ``v_1``). A lone lucky draw far below both neighbours
    then cannot set the bar, while a level the fidelity holds (a neighbour within a factor
    ``jitter``) counts in full; a value under the floor (closer to the target than a second
    target sample) is sampling luck. The factor a rise must span grows with the run's own
    evaluation noise ``sigma_t`` (in log, :func:`log_noise` of ``l_i = log v_i``):

        f_t = max(factor, exp(noise * sigma_t)),
        sigma_t = max(log_noise(l_0..l_t, centred), log_noise(l_0..l_{t-rises}, least=4))

    the scatter about the run's steady trend (the rise itself, if steady, is no noise) and
    the scatter before the rise under test (which the rise cannot inflate); either is 0
    while too short. It fires at t when the fidelity rose at each of the last ``rises``
    evaluations, ``v_t`` is :func:`significantly_worse` than ``b_t`` (above ``f_t * b_t``
    and 0.5 above it), and, as hysteresis, ``v_{t-1} > sqrt(f_t) * b_t``: the rise was
    already halfway (in log) at the previous evaluation, not one jump at the end. On a
    plateau scattering by 20 % a rise must reach ``e^{6 * 0.2} = 3.3x`` the bar, by 10 % the
    factor 2 alone applies. ``noise`` 6 is about the most the run of issue 10 allows (it
    fires at its 4th evaluation, a rise of 2.26 in log with ``sigma_t = 0.36``) and keeps
    false alarms on 40 evaluations of a plateau scattering by 20 % under 1 %
    (tests/train/test_evaluation.py); ``noise=0`` turns the noise term off. ``best`` and
    ``best_step`` name the best evaluation so far (its raw value).
    """

    def __init__(self, rises: int = 3, factor: float = 2.0, jitter: float = 1.25,
                 floor: float = 1.0, noise: float = 6.0) -> None:
        rises = check_positive_int("DivergenceMonitor rises", rises,
                                   "the evaluations in a row that must each rise, e.g. 3")
        self.factor = check_real("DivergenceMonitor factor", factor, above=1,
                                 fix="how many times the best counts as diverged, e.g. 2")
        self.jitter = check_real("DivergenceMonitor jitter", jitter, at_least=1,
                                 fix="the factor the fidelity moves by from noise, e.g. 1.25")
        self.floor = check_real("DivergenceMonitor floor", floor, at_least=0,
                                fix="the fidelity of a perfect map, 1 for the fidelity ratio")
        self.noise = check_real("DivergenceMonitor noise", noise, at_least=0,
                                fix="how many noise scales a rise must span, e.g. 6")
        self.values: deque[float] = deque(maxlen=rises + 1)
        self._recent: deque[float] = deque(maxlen=3)  # v_{t-2}, v_{t-1}, v_t
        self._held = math.inf  # min_{i<t} h_i
        self.history: list[float] = []  # log of every positive finite evaluation so far
        self.best, self.best_step = math.inf, -1
        self.fired = False

    def sigma(self) -> float:
        """``sigma_t``: the evaluation noise (in log) of the history."""
        before = self.history[:max(0, len(self.history) - (self.values.maxlen - 1))]
        return max(log_noise(self.history, centred=True), log_noise(before, least=4))

    def update(self, step: int, value: float) -> bool:
        """Add the evaluation at ``step``; True when it shows divergence."""
        finite = math.isfinite(value)
        if finite and value < self.best:
            self.best, self.best_step = value, step
        value = value if finite else math.inf
        self.values.append(value)
        self._recent.append(value)
        if len(self._recent) > 1:  # the evaluation before this one now has both neighbours
            *before, middle, after = self._recent
            self._held = min(self._held, max(middle, min([*before, after]) / self.jitter))
        if not finite:
            self.fired = True
            return True
        if value > 0:
            self.history.append(math.log(value))
        bar = max(self.floor, self._held)
        log_factor = max(math.log(self.factor), self.noise * self.sigma())
        # noise beyond what a float can scale by: no rise can stand out of it
        factor = math.exp(log_factor) if log_factor < _LOG_FLOAT_MAX else math.inf
        v = list(self.values)
        diverging = (len(v) == self.values.maxlen and all(b > a for a, b in zip(v[:-1], v[1:]))
                     and significantly_worse(value, bar, factor)
                     and v[-2] > math.sqrt(factor) * bar)
        self.fired = self.fired or diverging
        return diverging


class PotentialRunaway:
    """Watches the potential's gap ``g = E f(y) - E f(T(x))`` against the size of the
    transport cost ``c`` at each log row. In the saddle point the gap stays of the order of
    the cost; when f is unbounded it can grow without end (no Lipschitz or gradient
    constraint holds it), and the map's loss ``c - f(T(x))`` is then f's differences: the
    cost barely constrains the map, which behaves as a GAN generator, with no error raised. Fires
    once ``|g| > max(ratio * |c|, min_gap)`` held at ``rows`` log rows in
    a row: a cost near 0 at one row (the inner-product cost crossing zero) does not fire it,
    nor does the start of a run from the identity map, whose cost and gap are both ~0."""

    def __init__(self, ratio: float = 1e3, rows: int = 3, min_gap: float = 1.0) -> None:
        self.ratio, self.rows, self.min_gap = ratio, rows, min_gap
        self.streak = 0
        self.gap = self.cost = 0.0

    def update(self, row: dict[str, float]) -> bool:
        """Feed one log row (keys ``f_y``, ``f_t``, ``cost``); whether it fires now."""
        if not {"f_y", "f_t", "cost"} <= row.keys():
            return False
        self.gap, self.cost = row["f_y"] - row["f_t"], row["cost"]
        if abs(self.gap) > max(self.ratio * abs(self.cost), self.min_gap):
            self.streak += 1
        else:
            self.streak = 0
        return self.streak == self.rows

    def message(self, step: int) -> str:
        return (f"the potential has run away: at step {step} its gap E f(y) - E f(T(x)) is "
                f"{self.gap:.3g}, over {self.ratio:.0e} times the transport cost "
                f"({self.cost:.3g}) for {self.rows} log rows in a row: the map's loss is "
                f"then f's differences, the cost barely constrains the map and the result "
                f"need not be an optimal transport map (check the transport cost and the "
                f"pictures). Remedies: lower lr_potential (e.g. by 10x), raise k_map, or add "
                f"gradient_penalty (OTM-GP)")


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
