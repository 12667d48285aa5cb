"""Diagnostics of a training run: the fake-solution (oscillation) detector and the divergence
monitor (held-out fidelity drifting away from the best seen)."""

from __future__ import annotations

import math
from collections import deque

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
