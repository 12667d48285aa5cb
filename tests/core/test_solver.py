"""The NeuralOT solver and otmap.fit against closed-form Gaussian OT maps and POT's exact OT."""

from __future__ import annotations

import copy
import io

import numpy as np
import ot
import pytest
import torch

import otmap
from otmap.core.costs import InnerProduct, StrongQuadratic
from otmap.core.maps import DeterministicMap
from otmap.core.schedules import MultiStep
from otmap.core.solver import NeuralOT
from otmap.errors import InputError
from otmap.nets import build_net

pytestmark = pytest.mark.usefixtures("torch_single_thread")

GAUSS_FIT = {"map": {"hidden": [64, 64]}, "potential": {"hidden": [64, 64]},
             "batch_size": 128, "k_map": 3, "lr_map": 3e-3, "lr_potential": 3e-3,
             "progress": False, "log_every": 50, "eval_every": 1000, "eval_samples": 256}


def _eval_points(gaussian2d, n: int, seed: int = 1234) -> torch.Tensor:
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return gaussian2d.source(n)
    finally:
        torch.set_rng_state(state)


@pytest.fixture(scope="module")
def quadratic_fit(gaussian2d):
    return otmap.fit(gaussian2d.source, gaussian2d.target, steps=150, seed=1, **GAUSS_FIT)


@pytest.fixture(scope="module")
def inner_product_fit(gaussian2d):
    return otmap.fit(gaussian2d.source, gaussian2d.target, cost="inner_product", steps=200,
                     seed=1, **GAUSS_FIT)


def test_closed_form_reference_is_the_gaussian_ot_map(gaussian2d):
    # the test's own ground truth: A symmetric PD and A S1 A = S2
    a = gaussian2d.a
    torch.testing.assert_close(a, a.T)
    assert bool((torch.linalg.eigvalsh(a) > 0).all())
    torch.testing.assert_close(a @ gaussian2d.s1 @ a, gaussian2d.s2)


# ----------------------------------------------------------------------------- fit accuracy

def test_fit_recovers_gaussian_map(quadratic_fit, gaussian2d):
    x = _eval_points(gaussian2d, 4000)
    uvp = gaussian2d.l2_uvp(quadratic_fit.transport(x), x)
    assert uvp < 2.0, f"L2-UVP {uvp:.2f}% >= 2%"
    # the identity map is far from the answer, so the bound above means something
    assert gaussian2d.l2_uvp(x, x) > 50.0
    assert type(quadratic_fit.cost) is StrongQuadratic


def test_inner_product_cost_learns_the_same_map(quadratic_fit, inner_product_fit, gaussian2d):
    assert type(inner_product_fit.cost) is InnerProduct
    x = _eval_points(gaussian2d, 4000)
    t_quad, t_inner = quadratic_fit.transport(x), inner_product_fit.transport(x)
    assert gaussian2d.l2_uvp(t_inner, x) < 4.0
    between = 100.0 * float((t_quad - t_inner).pow(2).sum(1).mean()) / gaussian2d.target_variance
    assert between < 5.0, f"the two costs' maps differ by {between:.2f}% of Var(target)"


def test_fitted_pairing_matches_exact_discrete_ot(quadratic_fit, gaussian2d):
    """On 200 points, POT's exact assignment between x_i and the images T(x_j) is (nearly) the
    map's own pairing i -> i, and the map's cost is the exact OT cost to the true images."""
    x = _eval_points(gaussian2d, 200, seed=7)
    tx = quadratic_fit.transport(x)
    xn, tn = x.double().numpy(), tx.double().numpy()
    cost = 0.5 * ot.dist(xn, tn, metric="sqeuclidean")
    uniform = np.full(200, 1 / 200)
    plan = ot.emd(uniform, uniform, cost)
    assignment = plan.argmax(axis=1)
    assert (assignment == np.arange(200)).mean() >= 0.9
    map_cost = float(np.diag(cost).mean())
    exact = float(ot.emd2(uniform, uniform, cost))
    assert exact <= map_cost * (1 + 1e-9)
    assert map_cost <= 1.01 * exact
    # against the exact OT cost between x and the true images T*(x)
    true_images = gaussian2d.true_map(x).double().numpy()
    exact_true = float(ot.emd2(uniform, uniform,
                               0.5 * ot.dist(xn, true_images, metric="sqeuclidean")))
    assert abs(map_cost - exact_true) <= 0.03 * exact_true


# ----------------------------------------------------------------------------- the solver

def _solver(dim: int = 2, **kwargs) -> NeuralOT:
    net = build_net({"name": "MapMLP", "in_features": dim, "out_features": dim,
                     "hidden": [16, 16]})
    f = build_net({"name": "PotentialMLP", "in_features": dim, "hidden": [16, 16]})
    return NeuralOT(DeterministicMap(net), f, StrongQuadratic(), **kwargs)


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_map_is_identity_at_initialisation():
    torch.manual_seed(0)
    net = build_net({"name": "MapMLP", "in_features": 3, "out_features": 3, "hidden": [16]})
    x = torch.randn(50, 3) * 4 + 2
    assert torch.equal(net(x), x)
    net.fit_scaling(x, 3 * torch.randn(50, 3))  # standardisation does not break it
    assert torch.equal(net(x), x)
    ys = DeterministicMap(net).sample(x, 4)
    assert ys.shape == (50, 4, 3)
    assert all(torch.equal(ys[:, k], x) for k in range(4))
    # unequal dimensions: no residual, the output starts at zero
    wide = build_net({"name": "MapMLP", "in_features": 2, "out_features": 5, "hidden": [8]})
    assert torch.equal(wide(torch.randn(7, 2)), torch.zeros(7, 5))


def test_map_step_updates_only_the_map():
    torch.manual_seed(0)
    solver = _solver()
    map0, pot0 = _params(solver.map), _params(solver.potential)
    stats = solver.map_step(torch.randn(64, 2))
    assert set(stats) >= {"loss_map", "cost"}
    assert all(torch.equal(a, b) for a, b in zip(_params(solver.potential), pot0))
    assert any(not torch.equal(a, b) for a, b in zip(_params(solver.map), map0))


def test_potential_step_updates_only_the_potential():
    torch.manual_seed(0)
    solver = _solver()
    solver.map_step(torch.randn(64, 2))
    map0, pot0 = _params(solver.map), _params(solver.potential)
    stats = solver.potential_step(torch.randn(64, 2), torch.randn(64, 2) + 3)
    assert set(stats) >= {"loss_potential", "f_y", "f_t"}
    assert all(torch.equal(a, b) for a, b in zip(_params(solver.map), map0))
    assert any(not torch.equal(a, b) for a, b in zip(_params(solver.potential), pot0))
    # the loss is E f(T(x)) - E f(y), the two reported terms
    torch.testing.assert_close(stats["loss_potential"], stats["f_t"] - stats["f_y"])


def test_map_loss_is_cost_minus_potential_by_hand():
    torch.manual_seed(0)
    solver = _solver()
    x = torch.randn(16, 2)
    loss, stats = solver.map_loss(x)
    # at initialisation T(x) = x: the quadratic cost is 0 and the loss is -mean f(x)
    assert float(stats["cost"]) == 0.0
    torch.testing.assert_close(loss, -solver.potential(x).mean())


def test_ema_is_the_bias_corrected_average_of_the_map_weights():
    torch.manual_seed(0)
    decay = 0.9
    solver = _solver(ema_decay=decay)
    iterates = []
    for _ in range(3):
        solver.map_step(torch.randn(64, 2))
        iterates.append(_params(solver.map))
    # by hand: sum_s d^(t-s) theta_s (1 - d) / (1 - d^t); the initial weights do not count
    weights = [decay ** (3 - s) * (1 - decay) / (1 - decay ** 3) for s in (1, 2, 3)]
    assert abs(sum(weights) - 1.0) < 1e-12
    for i, ema in enumerate(_params(solver.ema_map)):
        torch.testing.assert_close(ema, sum(w * it[i] for w, it in zip(weights, iterates)))
    assert solver.eval_map is solver.ema_map
    assert _solver().eval_map is not None and _solver().ema_map is None


def test_ema_count_resumes_and_old_files_count_their_updates():
    torch.manual_seed(0)
    solver = _solver(ema_decay=0.99)
    solver.map_step(torch.randn(64, 2))
    state = solver.training_state()
    assert state["ema_updates"] == 1
    fresh = _solver(ema_decay=0.99)
    fresh.load_training_state(state)
    assert fresh.ema_updates == 1
    old = {k: v for k, v in state.items() if k != "ema_updates"}
    old["step"] = 7
    fresh.load_training_state(old)
    assert fresh.ema_updates == 7 * fresh.k_map


def test_fit_with_ema_returns_the_ema_map(gaussian2d, small_fit_kwargs):
    result = otmap.fit(gaussian2d.source, gaussian2d.target, steps=20, ema_decay=0.9,
                       **small_fit_kwargs)
    raw = copy.deepcopy(result.map)
    raw.load_state_dict(result.training["map"])
    ema_state = result.map.state_dict()
    assert any(not torch.equal(ema_state[k], v) for k, v in result.training["map"].items())
    for k, v in result.training["ema_map"].items():
        assert torch.equal(ema_state[k], v)
    x = gaussian2d.source(100)
    with torch.no_grad():
        raw_out = raw(x)
    ema_out = result.transport(x)
    assert not torch.allclose(ema_out, raw_out)
    # both moved away from the identity, and the average lags but stays near the raw map
    assert not torch.allclose(ema_out, x)
    assert float((ema_out - raw_out).abs().max()) < float((raw_out - x).abs().max())


def test_fit_without_ema_returns_the_raw_map(gaussian2d, small_fit_kwargs):
    result = otmap.fit(gaussian2d.source, gaussian2d.target, steps=5, **small_fit_kwargs)
    assert result.training["ema_map"] is None
    state = result.map.state_dict()
    assert all(torch.equal(state[k], v) for k, v in result.training["map"].items())


def test_train_step_schedule_and_call_counts():
    torch.manual_seed(0)
    solver = _solver(k_map=3, lr_map=1e-3, lr_potential=2e-3,
                     lr_schedule=MultiStep((1, 2), factor=0.1))
    calls = {"source": 0, "target": 0}

    def source():
        calls["source"] += 1
        return torch.randn(32, 2)

    def target():
        calls["target"] += 1
        return torch.randn(32, 2) + 1

    expected_lrs = [(1e-3, 2e-3), (1e-4, 2e-4), (1e-5, 2e-5)]
    for step, (lr_map, lr_pot) in enumerate(expected_lrs):
        assert solver.step == step
        stats = solver.train_step(source, target)
        assert solver.map_optimizer.param_groups[0]["lr"] == pytest.approx(lr_map)
        assert solver.potential_optimizer.param_groups[0]["lr"] == pytest.approx(lr_pot)
    assert solver.step == 3
    assert calls == {"source": 3 * (3 + 1), "target": 3}
    assert set(stats) >= {"loss_map", "cost", "loss_potential"}
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())


def test_training_state_round_trip_continues_identically():
    torch.manual_seed(0)
    a = _solver(ema_decay=0.5)
    for _ in range(2):
        a.train_step(lambda: torch.randn(16, 2), lambda: torch.randn(16, 2) + 1)
    buffer = io.BytesIO()
    torch.save(a.training_state(), buffer)  # as a checkpoint does (no shared optimizer state)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)
    b = _solver(ema_decay=0.5)
    b.load_training_state(state)
    assert b.step == 2
    rng = torch.get_rng_state()
    a.train_step(lambda: torch.randn(16, 2), lambda: torch.randn(16, 2) + 1)
    torch.set_rng_state(rng)
    b.train_step(lambda: torch.randn(16, 2), lambda: torch.randn(16, 2) + 1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    for pa, pb in zip(a.ema_map.parameters(), b.ema_map.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"k_map": 0}, "k_map"),
    ({"num_samples": 2}, "num_samples=1"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"ema_decay": 0.0}, "ema_decay"),
])
def test_solver_rejects_bad_options(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        _solver(**kwargs)
