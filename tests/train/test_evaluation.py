"""The training diagnostics on sequences they were not tuned on.

:class:`OscillationDetector` was tuned on four fidelity sequences (tests/core/test_weak.py) and
:class:`DivergenceMonitor` on two (tests/train/test_quality.py). Here both see sequences built
from first principles, with the verdict a working detector owes each (the detector's own rule
is not used to pick them), and fidelity sequences of real runs made after the tuning. The
first rules missed slow swings and false-alarmed on damped oscillations and noisy convergence
(issue 10, item 3); the rules were redesigned until every verdict here held, without changing
a verdict to fit a rule. Their noise terms were then sized on 1,000 seeded runs of noisy
plateaus, convergence, rises and swings; the section "noise-aware thresholds" replays them on
200 seeds, false-alarm bounds about twice the 1,000-seed rates, detection bounds a few points
under them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import torch

from otmap.errors import InputError
from otmap.train.evaluation import (
    DivergenceMonitor,
    OscillationDetector,
    PotentialRunaway,
    log_noise,
)


def oscillation_fires(values: list[float], **settings: float) -> list[int]:
    """Indices at which a fresh detector reports oscillation."""
    detector = OscillationDetector(**settings)
    fired = [i for i, v in enumerate(values) if detector.update(v)]
    assert detector.fired is bool(fired)
    return fired


def divergence_fires(values: list[float], **settings: float) -> list[int]:
    """Indices at which a fresh monitor reports divergence (evaluations every 100 steps)."""
    monitor = DivergenceMonitor(**settings)
    return [i for i, v in enumerate(values) if monitor.update(100 * i, v)]


def swing(period: int, centre: float, factor: float, n: int = 24) -> list[float]:
    """A persistent oscillation of the fidelity between ``centre / sqrt(factor)`` and
    ``centre * sqrt(factor)`` (geometric), with ``period`` evaluations per cycle (phase 0.3:
    no two successive evaluations equal)."""
    half = math.log(factor) / 2
    return [centre * math.exp(half * math.cos(2 * math.pi * i / period + 0.3))
            for i in range(n)]


# ------------------------------------------------------------------ persistent oscillations

def test_a_fast_persistent_swing_far_above_the_floor_fires():
    # fidelity ~11 <-> ~55, alternating: no fit settles like this; it fires from the first
    # full window (6 evaluations) on, at every evaluation
    values = swing(2, centre=25, factor=6)
    assert oscillation_fires(values) == list(range(5, len(values)))
    # a 3-cycle of the same range: fires from the first full window, and keeps firing
    fired = oscillation_fires(swing(3, centre=25, factor=6))
    assert fired[0] == 5 and all(b - a <= 2 for a, b in zip(fired[:-1], fired[1:]))


@pytest.mark.parametrize("period", [4, 5, 6, 8])
def test_a_slower_persistent_swing_far_above_the_floor_fires(period):
    values = swing(period, centre=25, factor=10, n=32)
    assert oscillation_fires(values)


def test_a_persistent_swing_below_the_level_or_range_is_not_a_fake_solution():
    # near the floor (1 = as good as a second target sample): sampling noise, not cycling
    assert oscillation_fires(swing(2, centre=2.5, factor=6)) == []
    # far above the floor but only 2x up and down: a plateau with noise
    assert oscillation_fires(swing(2, centre=40, factor=2)) == []


# ------------------------------------------------------------------------------- converging

def test_monotone_decay_and_slow_noisy_decay_are_silent():
    assert oscillation_fires([100 * 0.7**i + 1 for i in range(30)]) == []
    for seed in range(100):  # 40 -> 2 over 40 evaluations with 5 % noise
        rng = random.Random(seed)
        values = [(2 + 38 * math.exp(-i / 12)) * math.exp(rng.gauss(0, 0.05))
                  for i in range(40)]
        assert oscillation_fires(values) == [], seed
        assert divergence_fires(values) == [], seed


def _converging(seed: int, noise) -> list[float]:
    """From 4x the floor (1) down to it over 40 evaluations, times seeded noise ``noise(rng)``."""
    rng = random.Random(seed)
    return [(1 + 3 * math.exp(-i / 4)) * noise(rng) for i in range(40)]


def test_noisy_convergence_around_a_low_floor_is_silent():
    for seed in range(200):  # 20 % (log-normal) noise throughout
        values = _converging(seed, lambda rng: math.exp(rng.gauss(0, 0.2)))
        assert oscillation_fires(values) == [], seed
    # noise within +-25 %, the documented "0.1-0.3 near 1": on a non-increasing trend any
    # value is at most 1.25 / 0.75 = 1.67 < 2 times the best, so divergence cannot fire
    for seed in range(200):
        values = _converging(seed, lambda rng: 1 + rng.uniform(-0.25, 0.25))
        assert divergence_fires(values) == [], seed


def test_noisy_convergence_with_unbounded_noise_does_not_look_like_divergence():
    fired = [seed for seed in range(200)
             if divergence_fires(_converging(seed, lambda rng: math.exp(rng.gauss(0, 0.15))))]
    assert fired == []


def test_noisy_convergence_from_far_above_the_floor_is_silent():
    fired = 0
    for seed in range(100):
        rng = random.Random(seed)
        values = [(1 + 20 * math.exp(-i / 4)) * math.exp(rng.gauss(0, 0.2)) for i in range(40)]
        fired += bool(oscillation_fires(values))
    assert fired == 0


def test_a_damped_oscillation_is_silent_once_it_has_settled():
    """A swing about the floor that halves each evaluation: whatever the first windows say,
    the detector must fall silent once the swing is gone."""
    detector = OscillationDetector()
    values = [1.5 + 20 * 0.5**i * (1 + 0.6 * (-1) ** i) for i in range(20)]
    verdicts = [detector.update(v) for v in values]
    assert not any(verdicts[10:])


def test_a_damped_oscillation_that_settles_never_fires():
    values = [1.5 + 20 * 0.5**i * (1 + 0.6 * (-1) ** i) for i in range(20)]
    assert oscillation_fires(values) == []


# ---------------------------------------------------------------------------------- rising

def test_a_monotone_rise_is_divergence_not_oscillation():
    rise = [1.5**i for i in range(12)]
    assert oscillation_fires(rise) == []
    # hand count: three rises in a row from index 3 on, and 1.5^3 = 3.4 > 2 x the best (1)
    assert divergence_fires(rise) == list(range(3, 12))


def test_a_sustained_rise_after_convergence_fires_when_twice_the_best():
    settled = [10.0, 4.0, 2.0, 1.2, 1.0]
    values = settled + [1.1**k for k in range(1, 16)]
    # first k with 1.1^k > 2 (and 1.1^k - 1 > 0.5) is k = 8 (1.1^7 = 1.95, 1.1^8 = 2.14)
    assert divergence_fires(values)[0] == len(settled) - 1 + 8
    assert oscillation_fires(values) == []


def test_a_noisy_sustained_rise_fires_and_a_single_spike_does_not():
    for seed in range(50):
        rng = random.Random(seed)
        values = [1.3**i * math.exp(rng.gauss(0, 0.05)) for i in range(15)]
        assert divergence_fires(values), seed
    assert divergence_fires([2.0, 1.2, 1.0, 1.0, 9.0, 1.0, 1.1, 1.0, 0.9]) == []


# ------------------------------------------------- fidelity of real runs (made after tuning)

#: fidelity at each evaluation (every 250 steps, 3000 steps) of ``otmap train
#: not-toy-moons-square cost.name=C cost.gamma=1 map.residual=R`` (metrics.jsonl)
REAL_RUNS = {
    "weak-quadratic-residual": [36.99, 94.38, 246.51, 23.03, 92.72, 79.28, 22.88, 6.0, 31.32,
                                11.83, 25.76, 28.94],
    "weak-quadratic-plain": [42.11, 95.14, 35.53, 22.12, 40.57, 99.12, 44.97, 21.53, 7.8, 7.2,
                             8.71, 6.43],
    "kernel-residual": [13.89, 6.83, 6.52, 4.28, 7.13, 6.23, 4.9, 5.07, 1.28, 3.5, 2.85, 3.66],
    "kernel-plain": [4.61, 3.36, 9.22, 4.89, 5.28, 3.2, 4.86, 5.93, 1.5, 3.8, 3.38, 3.27],
}
#: converging runs: the gaussian-8blobs quick start, W2 benchmark pairs (D = 4, D = 64), the
#: Brenier pair (D = 16) and a profiling run
CONVERGING_RUNS = [
    [6.31, 2.84, 5.29, 6.83, 2.7, 2.71],
    [10.58, 4.78, 2.6, 1.51, 2.09, 2.08],
    [20.33, 22.7, 7.77, 3.4, 1.76, 1.21],
    [21.15, 3.72, 3.44, 3.45, 2.04, 0.77],
    [24.43, 23.93, 23.3, 22.65, 21.88, 20.94],
]


def test_real_runs_weak_quadratic_fires_kernel_cost_does_not():
    assert oscillation_fires(REAL_RUNS["weak-quadratic-residual"])
    assert oscillation_fires(REAL_RUNS["kernel-residual"]) == []
    assert oscillation_fires(REAL_RUNS["kernel-plain"]) == []
    for values in REAL_RUNS.values():  # swinging, not drifting away
        assert divergence_fires(values) == []


def test_real_run_weak_quadratic_without_residual_fires():
    assert oscillation_fires(REAL_RUNS["weak-quadratic-plain"])


@pytest.mark.parametrize("values", CONVERGING_RUNS)
def test_real_converging_runs_are_silent(values):
    assert oscillation_fires(values) == []
    assert divergence_fires(values) == []


# ------------------------------------------------------------------ noise-aware thresholds

SEEDS = range(200)


def noisy(trend: Callable[[int], float], noise: float, seed: int, n: int = 40) -> list[float]:
    """``trend(i) * exp(e_i)`` for evaluations i < n, with seeded ``e_i ~ N(0, noise^2)``
    (log-normal evaluation noise: 0.2 scatters the fidelity by about 20 %)."""
    rng = random.Random(seed)
    return [trend(i) * math.exp(rng.gauss(0, noise)) for i in range(n)]


#: what a run may do without anything going wrong: hold a level far above the floor (1), or
#: converge to the floor from near it, from far above it, or slowly
QUIET = {
    "plateau at 3": lambda i: 3.0,
    "plateau at 10": lambda i: 10.0,
    "converging from 4": lambda i: 1 + 3 * math.exp(-i / 4),
    "converging from 21": lambda i: 1 + 20 * math.exp(-i / 4),
    "slowly converging from 40": lambda i: 2 + 38 * math.exp(-i / 12),
}


def test_log_noise_recovers_the_scatter_whatever_the_signal():
    rng = random.Random(0)
    e = [rng.gauss(0, 0.2) for _ in range(10_000)]
    for lag, order in [(1, 1), (2, 1), (3, 1), (1, 3)]:
        assert log_noise(e, lag, order) == pytest.approx(0.2, rel=0.05), (lag, order)
    # a steady trend (centred), a swing of period 2 (lag 2), a parabola (order 3): only noise
    assert log_noise([0.3 * i + x for i, x in enumerate(e)], centred=True) == pytest.approx(
        log_noise(e, centred=True))
    assert log_noise([(-1) ** i + x for i, x in enumerate(e)], lag=2) == pytest.approx(
        log_noise(e, lag=2))
    assert log_noise([0.01 * i * i + x for i, x in enumerate(e)], order=3) == pytest.approx(
        log_noise(e, order=3))
    assert log_noise([1.0, 2.0, 5.0]) == 0.0  # 2 differences, fewer than least=3


@pytest.mark.parametrize("noise", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("trend", QUIET)
def test_noisy_plateaus_and_convergence_rarely_alarm(trend, noise):
    """False alarms out of 200 runs of 40 evaluations. At up to 20 % noise at most 2 %
    (1,000 seeds: at most 0.6 %); at 30 % at most 6 % (at most 2.7 %), and from the 8th
    evaluation on, once both detectors trust their noise estimate, at most 3 % (1.3 %). The
    first few evaluations keep the plain factor rules, which the runs above must fire on."""
    runs = [noisy(QUIET[trend], noise, seed) for seed in SEEDS]
    overall, late = (0.02, 0.02) if noise < 0.25 else (0.06, 0.03)
    for fires in (oscillation_fires, divergence_fires):
        fired = [fires(values) for values in runs]
        assert sum(map(bool, fired)) <= overall * len(runs), fires.__name__
        assert sum(any(i >= 7 for i in f) for f in fired) <= late * len(runs), fires.__name__


def test_without_the_noise_terms_noisy_plateaus_alarm_often():
    """The scenarios above are hard: the plain factor rules (``noise=0``) alarm on 15 % of
    the plateaus at 3 with 20 % noise (1,000 seeds: 17.7 %) and on 18 % of those at 10 with
    30 % noise (18.6 %)."""
    plateau_3 = [divergence_fires(noisy(QUIET["plateau at 3"], 0.2, seed), noise=0)
                 for seed in SEEDS]
    plateau_10 = [oscillation_fires(noisy(QUIET["plateau at 10"], 0.3, seed), noise=0)
                  for seed in SEEDS]
    assert sum(map(bool, plateau_3)) >= 0.1 * len(SEEDS)
    assert sum(map(bool, plateau_10)) >= 0.1 * len(SEEDS)


@pytest.mark.parametrize(("noise", "rate", "detected"), [
    (0.1, 1.3, 0.97),  # 1,000 seeds: 100 % on both starts
    (0.2, 1.3, 0.88),  # 97.4 % from the plateau, 95.3 % after convergence
    (0.3, 1.5, 0.9),   # 97.7 %, 96.2 %
])
@pytest.mark.parametrize("start", ["plateau at 3", "converging from 4"])
def test_a_noisy_rise_after_a_plateau_or_convergence_fires(start, noise, rate, detected):
    """From evaluation 20 on the fidelity rises by ``rate`` per evaluation (to 23x or 130x by
    the 32nd): detected (fired at 20 or later) in at least ``detected`` of the runs."""
    def trend(i: int) -> float:
        return QUIET[start](i) * rate ** max(0, i - 19)

    hits = sum(any(i >= 20 for i in divergence_fires(noisy(trend, noise, seed, n=32)))
               for seed in SEEDS)
    assert hits >= detected * len(SEEDS)


@pytest.mark.parametrize("noise", [0.1, 0.2])
@pytest.mark.parametrize(("period", "factor"), [(2, 6), (3, 6), (4, 6), (6, 6), (2, 10),
                                                (3, 10), (4, 10), (6, 10), (8, 10)])
def test_a_noisy_persistent_swing_fires(period, factor, noise):
    """The swings above (about 25) with noise: detected in at least 95 % of the runs (1,000
    seeds: at least 98.3 %)."""
    clean = swing(period, centre=25, factor=factor, n=32)
    hits = sum(bool(oscillation_fires(noisy(clean.__getitem__, noise, seed, n=32)))
               for seed in SEEDS)
    assert hits >= 0.95 * len(SEEDS)


@pytest.mark.parametrize("noise", [0.1, 0.2])
@pytest.mark.parametrize("period", [2, 4, 6])
def test_a_swing_that_starts_after_a_noisy_plateau_fires(period, noise):
    """20 evaluations at 10, then a 10x swing about 25: the quiet stretch sets the noise
    estimate, and the swing is detected (fired at 20 or later) in at least 93 % of the runs
    (1,000 seeds: at least 98 %)."""
    clean = [10.0] * 20 + swing(period, centre=25, factor=10, n=20)
    hits = sum(any(i >= 20 for i in oscillation_fires(noisy(clean.__getitem__, noise, seed)))
               for seed in SEEDS)
    assert hits >= 0.93 * len(SEEDS)


# ------------------------------------------------------------------- the bar and the settings

def test_a_lone_lucky_draw_does_not_set_the_bar_but_a_sharp_best_does():
    # a plateau at 3 with one draw of 1.2, then a drift to 4: a third worse, not twice
    assert divergence_fires([3.0, 3.1, 1.2, 3.0, 3.3, 3.6, 4.0]) == []
    # the best of a V (1.0, its neighbours 1.5 and 10) counts: the rise to 4 fires at once
    assert divergence_fires([10.0, 1.0, 1.5, 2.5, 4.0, 8.0]) == [4, 5]


@pytest.mark.parametrize(("make", "match"), [
    (lambda: OscillationDetector(window=2), "window must be an integer >= 3"),
    (lambda: OscillationDetector(ratio=1.0), "ratio must be a number > 1"),
    (lambda: OscillationDetector(level=0), "level must be a positive number"),
    (lambda: DivergenceMonitor(rises=0), "rises must be a positive integer"),
    (lambda: DivergenceMonitor(factor=0.5), "factor must be a number > 1"),
    (lambda: DivergenceMonitor(jitter=0.9), "jitter must be a number >= 1"),
    (lambda: DivergenceMonitor(floor=-1), "floor must be a number >= 0"),
    (lambda: OscillationDetector(noise=-1), "noise must be a number >= 0"),
    (lambda: DivergenceMonitor(noise=float("nan")), "noise must be a number >= 0"),
])
def test_monitors_refuse_bad_settings(make, match):
    with pytest.raises(InputError, match=match):
        make()


def _rows(gaps, costs):
    return [{"f_y": g, "f_t": 0.0, "cost": c} for g, c in zip(gaps, costs)]


def test_potential_runaway_fires_once_on_a_gap_that_dwarfs_the_cost():
    # mnist-denoise's rows (2026-12-03): the gap grew from 4e5 to 4e10 while the cost
    # stayed ~0.07 per pixel
    gaps = [3.9e5, 5.3e7, 3.4e8, 8.8e8, 8.5e8]
    monitor = PotentialRunaway()
    fired = [monitor.update(row) for row in _rows(gaps, [0.1, 0.18, 0.07, 0.07, 0.08])]
    assert fired == [False, False, True, False, False]
    assert "run away" in monitor.message(150) and "gradient_penalty" in monitor.message(150)


def test_potential_runaway_stays_silent_on_healthy_and_starting_runs():
    rng = torch.Generator().manual_seed(0)
    cost = 0.1 + 0.05 * torch.rand(200, generator=rng)
    gap = 0.05 * torch.randn(200, generator=rng)
    # an inner-product cost crossing zero at one row in every ten
    cost[::10] = 1e-9
    monitor = PotentialRunaway()
    assert not any(monitor.update(r) for r in _rows(gap.tolist(), cost.tolist()))
    # the identity map at the start of a run: cost ~0 and gap ~0 for many rows
    start = PotentialRunaway()
    assert not any(start.update(r) for r in _rows([3e-4] * 20, [1e-7] * 20))
    # a row without the potential's terms (a loss-only logger) is skipped
    assert not PotentialRunaway().update({"cost": 1.0})


def test_potential_runaway_streak_restarts_after_a_normal_row():
    monitor = PotentialRunaway(rows=3)
    rows = _rows([1e6, 1e6, 0.01, 1e6, 1e6, 1e6], [0.1] * 6)
    assert [monitor.update(r) for r in rows] == [False, False, False, False, False, True]
