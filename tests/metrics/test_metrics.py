"""Tests of otmap.metrics against hand-computed and brute-force answers."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import warnings

import pytest
import torch

from otmap.errors import InputError
from otmap.metrics import (
    cos,
    energy_distance,
    exact_ot_assignment,
    exact_ot_cost,
    l2_uvp,
    sliced_w2,
    total_variance,
    transport_cost,
)


def _brute_force(a: torch.Tensor, b: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    """Minimum over permutations of mean_i 1/2|a_i - b_sigma(i)|^2, and the argmin."""
    best = min(
        itertools.permutations(range(len(a))),
        key=lambda p: 0.5 * (a - b[list(p)]).pow(2).sum().item(),
    )
    return 0.5 * (a - b[list(best)]).pow(2).sum(1).mean().item(), best


def test_total_variance_hand_value_and_images():
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    assert total_variance(x).item() == pytest.approx(1.0 + 4.0)
    images = x.reshape(2, 1, 2, 1)
    assert total_variance(images).item() == pytest.approx(5.0)


def test_l2_uvp_hand_value():
    truth = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    predicted = torch.tensor([[1.0, 0.0], [1.0, 3.0]])
    # squared errors 1 and 4 -> mean 2.5; 100 * 2.5 / 5 = 50
    assert l2_uvp(predicted, truth, 5.0) == pytest.approx(50.0)
    # the target variance can be given as target samples: Var = 1 + 4 = 5
    target = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    assert l2_uvp(predicted, truth, target) == pytest.approx(50.0)
    assert l2_uvp(predicted, truth, total_variance(target)) == pytest.approx(50.0)


def test_cos_hand_value():
    x = torch.zeros(2, 2)
    truth = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    predicted = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    # E<dt, dp> = (1 + 2) / 2 = 1.5, E|dt|^2 = 1, E|dp|^2 = (2 + 4) / 2 = 3
    assert cos(x, predicted, truth) == pytest.approx(1.5 / math.sqrt(3.0))
    assert cos(x, truth, truth) == pytest.approx(1.0)
    assert cos(x, -truth, truth) == pytest.approx(-1.0)


def test_w2_benchmark_baselines():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=generator)
    truth = 2.0 * x + torch.tensor([1.0, -2.0, 0.5])
    assert cos(x, x, truth) == 0.0
    constant = truth.mean(dim=0).expand_as(truth)
    assert l2_uvp(constant, truth, truth) == pytest.approx(100.0, rel=1e-6)


def test_transport_cost_hand_value():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[3.0, 4.0], [1.0, 2.0]])
    # 1/2 * 25 and 1/2 * 1 -> mean 6.5
    assert transport_cost(x, y) == pytest.approx(6.5)


def test_energy_distance_same_vs_shifted_and_symmetric():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(1500, 4, generator=generator)
    b = torch.randn(1500, 4, generator=generator)
    shifted = b + torch.tensor([1.0, 0.0, 0.0, 0.0])
    same = energy_distance(a, b)
    far = energy_distance(a, shifted)
    assert abs(same) < 0.02
    assert far > 0.2
    assert energy_distance(shifted, a) == pytest.approx(far, rel=1e-9)


def test_energy_distance_hand_value():
    a = torch.tensor([[0.0], [2.0]])
    b = torch.tensor([[1.0], [5.0]])
    # E|X-Y| = (1 + 5 + 1 + 3) / 4 = 2.5, E|X-X'| = 2, E|Y-Y'| = 4
    assert energy_distance(a, b) == pytest.approx(2 * 2.5 - 2.0 - 4.0)


def test_sliced_w2_shift_and_identity():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1000, 5, generator=generator)
    assert sliced_w2(x, x, generator=generator) == pytest.approx(0.0, abs=1e-6)
    for _ in range(5):
        direction = torch.randn(5, generator=generator)
        shift = 3.0 * direction / direction.norm()
        # E_theta <shift, theta>^2 = |shift|^2 / d for uniform unit theta
        expected = 3.0 / math.sqrt(5)
        value = sliced_w2(x, x + shift, n_projections=500, generator=generator)
        assert value == pytest.approx(expected, rel=0.1)


def test_sliced_w2_unequal_sizes_is_exact_in_one_dimension():
    a = torch.tensor([[0.0], [1.0]])
    b = torch.tensor([[0.0], [0.0], [3.0]])
    # quantiles: a = 0 on (0, 1/2), 1 on (1/2, 1); b = 0 on (0, 2/3), 3 on (2/3, 1)
    expected = math.sqrt((2 / 3 - 1 / 2) * 1.0 + (1 / 3) * 4.0)
    assert sliced_w2(a, b, n_projections=4) == pytest.approx(expected)


@pytest.mark.parametrize("n", [3, 5, 6])
def test_exact_ot_cost_and_assignment_match_brute_force(n):
    generator = torch.Generator().manual_seed(n)
    a = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    b = torch.randn(n, 2, generator=generator, dtype=torch.float64) + 0.5
    cost, best = _brute_force(a, b)
    assert exact_ot_cost(a, b) == pytest.approx(cost, rel=1e-9)
    assert exact_ot_assignment(a, b).tolist() == list(best)


def test_exact_ot_cost_weights():
    a = torch.tensor([[0.0], [1.0]])
    b = torch.tensor([[0.0]])
    # all mass to 0: 1/2 * (0.25 * 0 + 0.75 * 1)
    assert exact_ot_cost(a, b, a_weights=torch.tensor([1.0, 3.0])) == pytest.approx(0.375)


def test_exact_ot_warns_on_large_inputs():
    a = torch.zeros(5001, 1)
    b = torch.zeros(2, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exact_ot_cost(a, b)
    assert any("O(n^3)" in str(w.message) for w in caught)


def test_exact_ot_without_pot_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)  # `import ot` raises ImportError
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    for exact in (exact_ot_cost, exact_ot_assignment):
        with pytest.raises(InputError, match=r"need POT.*pip install 'otmap\[exact\]'"):
            exact(a, a)
    assert transport_cost(a, a) == 0  # the other metrics need no POT


def test_importing_otmap_does_not_import_pot():
    """POT takes seconds to import: only the exact-OT metrics load it, on first use."""
    code = "import sys, otmap, otmap.metrics, otmap.benchmarks; print('ot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_bad_inputs_raise_input_error():
    x = torch.zeros(4, 2)
    with pytest.raises(InputError, match="same shape"):
        l2_uvp(x, torch.zeros(3, 2), 1.0)
    with pytest.raises(InputError, match="positive"):
        l2_uvp(x, x, 0.0)
    with pytest.raises(InputError, match="NaN"):
        transport_cost(x, torch.full((4, 2), float("nan")))
    with pytest.raises(InputError, match=r"\[n, d\]"):
        total_variance(torch.zeros(4))
    with pytest.raises(InputError, match="equally many"):
        exact_ot_assignment(x, torch.zeros(3, 2))
    with pytest.raises(InputError, match="coordinates"):
        sliced_w2(x, torch.zeros(4, 3))
