"""A map that never fails silently: the divergence monitor, the linear-baseline check, the best
map kept when a run ends worse, and the inverse map from the potential."""

from __future__ import annotations

import json
import math
import random
import warnings

import pytest
import torch
from torch import nn

import otmap
from otmap.benchmarks import GaussianPair
from otmap.core.costs import InnerProduct, StrongQuadratic, WeakQuadratic
from otmap.core.maps import DeterministicMap
from otmap.core.solver import NeuralOT
from otmap.errors import InputError
from otmap.model.result import TransportResult
from otmap.nets import MapMLP
from otmap.train.evaluation import DivergenceMonitor, significantly_worse

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def fires(values: list[float]) -> list[int]:
    monitor = DivergenceMonitor()
    return [i for i, v in enumerate(values) if monitor.update(100 * i, v)]


def test_monitor_fires_on_the_issue_run():
    """The D=64 W2 benchmark run of issue 10 (fidelity at each evaluation)."""
    assert fires([13.7, 23.0, 148.0, 177.0, 147.0, 271.0]) == [3]


def test_monitor_silent_on_converging_runs():
    assert fires([3.77, 2.09, 1.66, 1.52]) == []          # digits-generate (issue 4)
    assert fires([3.59, 2.82, 1.80, 3.36, 0.86, 2.57, 1.50, 0.79, 0.87, 0.72, 0.49, 0.57]) == []
    # sequences it was not built on: noisy convergence to a floor of 1, slow drifts upward
    rng = random.Random(0)
    for _ in range(200):  # convergence with noise of up to ~30 % of the value
        values = [(1 + 5 * math.exp(-i / 3)) * (1 + abs(rng.gauss(0, 0.15)))
                  for i in range(20)]
        assert fires(values) == []
    assert fires([1.0, 1.05, 1.1, 1.15, 1.2, 1.25]) == []   # rising, but not clearly worse
    assert fires([1.0, 1.2, 1.5, 2.5, 4.0]) == [3, 4]       # rising and 2.5x the best


def test_monitor_tracks_best_and_non_finite():
    monitor = DivergenceMonitor()
    for step, value in [(1, 5.0), (2, 2.0), (3, 3.0)]:
        monitor.update(step, value)
    assert (monitor.best, monitor.best_step) == (2.0, 2)
    assert monitor.update(4, float("nan")) and monitor.fired
    assert significantly_worse(3.0, 1.2) and not significantly_worse(1.4, 1.0)
    assert significantly_worse(float("nan"), 1.0) and significantly_worse(float("inf"), 1.0)


def _corrupting_step(after: int):
    """A NeuralOT.train_step that, after ``after`` steps, pushes the map's output far off."""
    original = NeuralOT.train_step

    def train_step(solver: NeuralOT, *args):
        stats = original(solver, *args)
        if solver.step > after:
            with torch.no_grad():
                solver.map.net.linear.bias.add_(0.01 * (solver.step - after))
        return stats

    return train_step


def test_best_map_is_kept_when_the_run_ends_worse(gaussian2d, tmp_path, monkeypatch,
                                                   small_fit_kwargs):
    monkeypatch.setattr(NeuralOT, "train_step", _corrupting_step(after=160))
    with pytest.warns(RuntimeWarning) as record:
        result = otmap.fit(gaussian2d.source, gaussian2d.target, steps=320, eval_every=40,
                           log_every=40, run_dir=tmp_path / "run",
                           **{**small_fit_kwargs, "eval_samples": 512})
    messages = " ".join(str(w.message) for w in record)
    assert "diverging" in messages and "is returned" in messages
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
            .splitlines()]
    final = rows[-1]
    assert final["restored_step"] <= 160 and final["diverging"] == 1.0
    x = gaussian2d.source(2000)
    assert gaussian2d.l2_uvp(result.transport(x), x) < 10.0   # the corrupted map is far off
    # the run's model is the returned map; the training state is the last step's
    loaded = otmap.load(tmp_path / "run")
    assert torch.allclose(loaded.transport(x), result.transport(x))
    last = loaded.training["map"]["net.linear.bias"]
    assert not torch.allclose(last, result.map.net.linear.bias)


def _last_row(run_dir) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def _scores_by_call(values: list[float]):
    """An evaluator whose metric ``score`` takes ``values`` at its successive calls (the map
    itself is untouched, so its fidelity does not move)."""
    calls = iter(values)
    return lambda result, x, y: {"score": next(calls)}


@pytest.mark.parametrize("final, restored", [(0.1, True), (0.6, False)])
def test_best_metric_collapse_restores_the_best_map(gaussian2d, tmp_path, small_fit_kwargs,
                                                     final, restored):
    """A headline metric that falls under half its best by the end brings the best map back
    even though the fidelity barely moved (mnist-translate: 86 % -> 11 % in the target class,
    fidelity 7.4 -> 9.2); a smaller dip keeps the last map."""
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=200, eval_every=40,
                  log_every=40, run_dir=run, best_metric="max:score",
                  evaluator=_scores_by_call([0.5, 1.0, 0.9, 0.8, final]),
                  **{**small_fit_kwargs, "eval_samples": 256})
    final_row = _last_row(run)
    messages = " ".join(str(w.message) for w in record)
    if restored:
        assert final_row["restored_step"] == 80
        assert "the run ended with score 0.1, clearly worse than 1 at step 80" in messages
    else:
        assert "restored_step" not in final_row and "is returned" not in messages


def test_a_runaway_potential_is_reported(gaussian2d, monkeypatch, small_fit_kwargs):
    """The potential's output layer grows 1.5x a step (as an unbounded f can): its gap
    dwarfs the cost, which the trainer reports (a converging run stays silent, below)."""
    original = NeuralOT.train_step

    def train_step(solver: NeuralOT, *args):
        stats = original(solver, *args)
        if solver.step <= 40:
            last = [m for m in solver.potential.modules() if isinstance(m, nn.Linear)][-1]
            with torch.no_grad():
                last.weight.mul_(1.5)
        return stats

    monkeypatch.setattr(NeuralOT, "train_step", train_step)
    with pytest.warns(RuntimeWarning, match="the potential has run away"):
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=60, eval_every=60,
                  log_every=10, **small_fit_kwargs)


def test_converging_run_keeps_its_last_map(gaussian2d, small_fit_kwargs, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no divergence or baseline warning
        result = otmap.fit(gaussian2d.source, gaussian2d.target, steps=600, eval_every=150,
                           run_dir=tmp_path, **{**small_fit_kwargs, "eval_samples": 512,
                                                "k_map": 5, "lr_schedule": "cosine",
                                                "map": {"hidden": [64, 64]},
                                                "potential": {"hidden": [64, 64]}})
    x = gaussian2d.source(2000)
    assert gaussian2d.l2_uvp(result.transport(x), x) < 2.0
    last = _last_row(tmp_path)
    assert last["worse_than_linear"] == 0.0 and last["inverse_worse_than_linear"] == 0.0
    assert last["inverse_fidelity"] < 2.0  # ~1: as close to the source as a second sample


def test_inverse_worse_than_linear_warning(gaussian2d, small_fit_kwargs, monkeypatch,
                                           tmp_path):
    """An inverse that sends every target sample to one far point (as a potential that has not
    learned would) is judged at the end, apart from the map, and says so."""
    monkeypatch.setattr(TransportResult, "inverse",
                        lambda self, y, batch_size=4096: torch.full_like(y, 5.0))
    with pytest.warns(RuntimeWarning, match="inverse map from the potential"):
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=100, eval_every=50,
                  run_dir=tmp_path, **{**small_fit_kwargs, "eval_samples": 512})
    last = _last_row(tmp_path)
    assert last["inverse_worse_than_linear"] == 1.0 and last["inverse_fidelity"] > 10


def test_worse_than_linear_warning(gaussian2d, small_fit_kwargs):
    """A map that cannot learn (learning rates ~0) stays at the identity, far worse than the
    linear OT map on this pair, and says so."""
    with pytest.warns(RuntimeWarning, match="linear OT map"):
        otmap.fit(gaussian2d.source, gaussian2d.target, steps=100, eval_every=50,
                  lr_map=1e-12, lr_potential=1e-12, **{**small_fit_kwargs, "eval_samples": 512})


class _QuadraticPotential(nn.Module):
    """f(y) = 1/2 y'By + c.y with a known gradient By + c."""

    def __init__(self, b: torch.Tensor, c: torch.Tensor) -> None:
        super().__init__()
        self.b, self.c = nn.Parameter(b), nn.Parameter(c)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((y @ self.b) * y).sum(1) + y @ self.c


def _result(cost, potential) -> TransportResult:
    net = MapMLP(3, 3, hidden=[8])
    return TransportResult(DeterministicMap(net), cost=cost, source_shape=(3,),
                           target_shape=(3,), potential=potential)


def test_inverse_formula_per_cost():
    b = torch.tensor([[0.3, 0.1, 0.0], [0.1, 0.2, 0.0], [0.0, 0.0, -0.4]])
    c = torch.tensor([0.5, -1.0, 0.25])
    f = _QuadraticPotential(b, c)
    y = torch.randn(10, 3)
    grad = y @ b + c
    assert torch.allclose(_result(StrongQuadratic(), f).inverse(y), y - grad, atol=1e-6)
    assert torch.allclose(_result(StrongQuadratic("mean", scale=2.0), f).inverse(y),
                          y - 1.5 * grad, atol=1e-6)
    assert torch.allclose(_result(InnerProduct(), f).inverse(y), -grad, atol=1e-6)
    with pytest.raises(InputError, match="no closed-form inverse"):
        _result(WeakQuadratic(1.0), f).inverse(y)
    assert not _result(WeakQuadratic(1.0), f).invertible
    with pytest.raises(InputError, match="NaN"):
        _result(StrongQuadratic(), f).inverse(torch.full((2, 3), float("nan")))


@pytest.mark.parametrize("cost", ["quadratic", "inner_product"])
def test_inverse_recovers_gaussian_inverse_map(cost, tmp_path):
    pair = GaussianPair(dim=4, seed=1)
    result = otmap.fit(pair.source, pair.target, cost=cost, steps=600, progress=False,
                       map={"hidden": [64, 64]}, potential={"hidden": [64, 64]},
                       eval_every=600)
    inverse = pair.score_inverse(result.inverse)
    assert inverse["l2_uvp"] < 2.0 and inverse["cos"] > 0.99
    # the inverse survives save and load
    loaded = otmap.load(result.save(tmp_path / "m.pt"))
    y = pair.target.sample(100)
    assert torch.allclose(loaded.inverse(y), result.inverse(y), atol=1e-5)
