"""Tests of the ground-truth OT pairs in otmap.benchmarks."""

from __future__ import annotations

import pytest
import torch

from otmap.benchmarks import BrenierPair, BuresMap, GaussianPair, gaussian_ot_map
from otmap.errors import InputError
from otmap.metrics import exact_ot_assignment


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double()
    return x.mean(dim=0), torch.cov(x.T, correction=0)


def test_gaussian_ot_map_one_dimension_hand_value():
    a, b = gaussian_ot_map(
        torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]])
    )
    # T(x) = 3/2 (x - 1) + 3
    assert a.item() == pytest.approx(1.5)
    assert b.item() == pytest.approx(1.5)


def test_gaussian_pair_true_map_pushes_source_to_target():
    pair = GaussianPair(dim=5, seed=3)
    generator = torch.Generator().manual_seed(0)
    x = pair.source.sample(200_000, generator)
    assert x.shape == (200_000, 5) and x.dtype == torch.float32
    mean, cov = _moments(pair.true_map(x))
    scale = pair.cov_t.diagonal().max().item()
    assert torch.allclose(mean, pair.mean_t, atol=0.03 * scale**0.5)
    assert torch.allclose(cov, pair.cov_t, atol=0.03 * scale)
    assert pair.target_variance == pytest.approx(pair.cov_t.trace().item())
    assert torch.allclose(pair.A, pair.A.T)
    assert torch.linalg.eigvalsh(pair.A).min() > 0


def test_gaussian_pair_reproducible_by_seed():
    first, again, other = GaussianPair(4, seed=7), GaussianPair(4, seed=7), GaussianPair(4, seed=8)
    assert torch.equal(first.A, again.A) and torch.equal(first.b, again.b)
    assert not torch.allclose(first.A, other.A)
    samples = [p.target.sample(10, torch.Generator().manual_seed(1)) for p in (first, again)]
    assert torch.equal(*samples)


def test_brenier_pair_jacobian_is_symmetric_positive_definite():
    pair = BrenierPair(dim=6, seed=0)
    points = pair.source.sample(4, torch.Generator().manual_seed(0)).double()
    for point in points:
        jacobian = torch.autograd.functional.jacobian(lambda z: pair.true_map(z[None])[0], point)
        assert torch.allclose(jacobian, jacobian.T, atol=1e-10)
        assert torch.linalg.eigvalsh(jacobian).min() > 0
        gradient = torch.autograd.functional.jacobian(lambda z: pair.potential(z[None])[0], point)
        assert torch.allclose(gradient, pair.true_map(point[None])[0])


def test_brenier_pair_map_is_the_discrete_ot_assignment():
    pair = BrenierPair(dim=3, seed=1)
    generator = torch.Generator().manual_seed(0)
    x = pair.source.sample(200, generator).double()
    order = torch.randperm(200, generator=generator)
    y = pair.true_map(x)[order]
    sigma = exact_ot_assignment(x, y)
    assert torch.equal(order[sigma], torch.arange(200))


def test_brenier_pair_attributes_and_seed():
    pair = BrenierPair(dim=4, seed=2)
    assert pair.dim == 4 and pair.source.shape == (4,) and pair.target.dim == 4
    y = pair.target.sample(8, torch.Generator().manual_seed(0))
    assert y.shape == (8, 4) and y.dtype == torch.float32
    assert pair.target_variance == BrenierPair(dim=4, seed=2).target_variance
    assert pair.target_variance != BrenierPair(dim=4, seed=3).target_variance


def test_bures_baseline_exact_on_gaussian_and_clearly_worse_on_brenier():
    generator = torch.Generator().manual_seed(0)
    gaussian = GaussianPair(dim=8).baseline_scores(generator=generator)
    brenier = BrenierPair(dim=8).baseline_scores(generator=generator)
    assert gaussian["bures"]["l2_uvp"] < 0.5
    assert gaussian["bures"]["cos"] > 0.99
    assert brenier["bures"]["l2_uvp"] > 5.0
    assert gaussian["identity"]["cos"] == 0.0
    assert gaussian["mean"]["l2_uvp"] == pytest.approx(100.0, rel=0.1)


def test_score_of_true_map_and_bures_fit():
    pair = GaussianPair(dim=3, seed=5)
    scores = pair.score(pair.true_map, n=512)
    assert scores["l2_uvp"] == pytest.approx(0.0, abs=1e-8)
    assert scores["cos"] == pytest.approx(1.0)
    bures = BuresMap.fit(pair.source.sample(50_000), pair.target.sample(50_000))
    assert torch.allclose(bures.A.double(), pair.A, atol=0.05)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="dim"):
        GaussianPair(dim=0)
    with pytest.raises(InputError, match="positive definite"):
        gaussian_ot_map(torch.zeros(2), -torch.eye(2), torch.zeros(2), torch.eye(2))
    with pytest.raises(InputError, match="shape"):
        gaussian_ot_map(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(InputError, match="return"):
        GaussianPair(dim=2).score(lambda z: z[:, :1], n=16)
