"""Tests of otmap.data: samplers, input validation and toy distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from otmap.data import (
    TOY_DATASETS,
    CallableSampler,
    DatasetSampler,
    Sampler,
    TensorSampler,
    as_sampler,
    check_samples,
    sample_shape,
    toy,
)
from otmap.data.images import split_indices
from otmap.data.specs import load_dataset, part_indices
from otmap.errors import InputError

N = 20_000

# ----------------------------------------------------------------------------- check_samples


def test_check_samples_casts_float64_and_numpy():
    x = check_samples(torch.randn(5, 3, dtype=torch.float64), "x")
    assert x.dtype == torch.float32 and x.shape == (5, 3)
    y = check_samples(np.ones((4, 2)), "y")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    images = check_samples(torch.rand(3, 1, 4, 4), "images")
    assert images.shape == (3, 1, 4, 4)


@pytest.mark.parametrize(
    "bad",
    [torch.arange(6).reshape(3, 2), torch.ones(3, 2, dtype=torch.bool), np.arange(6).reshape(3, 2)],
)
def test_check_samples_rejects_non_float_dtypes(bad):
    with pytest.raises(InputError, match=r"expected floating point: convert with"):
        check_samples(bad, "source")


def test_check_samples_rejects_complex_with_fix():
    with pytest.raises(InputError, match=r"complex64.*x\.float\(\).*x\.real"):
        check_samples(torch.ones(3, 2, dtype=torch.complex64), "source")


def test_check_samples_rejects_non_arrays():
    with pytest.raises(InputError, match=r"got list: convert with torch\.as_tensor"):
        check_samples([[1.0, 2.0], [3.0, 4.0]], "source")


def test_check_samples_rejects_1d_with_hint():
    with pytest.raises(InputError) as info:
        check_samples(torch.randn(10), "source")
    msg = str(info.value)
    assert "source has shape (10,)" in msg
    assert "[n, d]" in msg and "x[:, None]" in msg


def test_check_samples_needs_two_samples():
    with pytest.raises(InputError, match=r"1 sample\(s\).*at least 2"):
        check_samples(torch.randn(1, 3), "target")


def test_check_samples_rejects_empty_features():
    with pytest.raises(InputError, match="empty feature dimension"):
        check_samples(torch.randn(4, 0), "target")


def test_check_samples_reports_non_finite_rows():
    x = torch.randn(100, 2)
    x[4, 0] = float("nan")
    x[17, 1] = float("inf")
    x[90] = float("-inf")
    with pytest.raises(InputError) as info:
        check_samples(x, "source")
    msg = str(info.value)
    assert "source contains 4 NaN/Inf values in rows [4, 17, 90]" in msg
    assert "drop or impute" in msg


def test_check_samples_truncates_long_row_lists():
    x = torch.full((20, 2), float("nan"))
    with pytest.raises(InputError, match=r"rows \[0, 1, 2, 3, 4, \.\.\. \(20 rows in all\)\]"):
        check_samples(x, "source")


# ----------------------------------------------------------------------------- samplers


def test_tensor_sampler_draws_rows_of_data():
    data = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    s = TensorSampler(data)
    assert len(s) == 10 and s.shape == (2,) and isinstance(s, Sampler)
    x = s.sample(500)
    assert x.shape == (500, 2)
    rows = {tuple(r) for r in data.tolist()}
    assert all(tuple(r) in rows for r in x.tolist())
    assert len({tuple(r) for r in x.tolist()}) == 10  # with replacement, all rows appear


def test_tensor_sampler_validates_data_and_n():
    with pytest.raises(InputError, match="NaN/Inf"):
        TensorSampler(torch.tensor([[0.0], [float("nan")]]))
    s = TensorSampler(torch.randn(5, 2))
    for n in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="n must be a positive integer"):
            s.sample(n)


def test_global_rng_rule():
    s = TensorSampler(torch.randn(50, 3))
    samplers = [s, toy("moons"), toy("letters"), toy("mixture_1d"), DatasetSampler(s.data)]
    for sampler in samplers:
        torch.manual_seed(123)
        a = sampler.sample(64)
        torch.manual_seed(123)
        b = sampler.sample(64)
        assert torch.equal(a, b), sampler


def test_explicit_generator_independent_of_global_state():
    s = TensorSampler(torch.randn(50, 3))
    for sampler in [s, toy("8blobs"), toy("swiss_roll"), DatasetSampler(s.data)]:
        torch.manual_seed(0)
        a = sampler.sample(32, generator=torch.Generator().manual_seed(7))
        torch.manual_seed(999)
        state = torch.get_rng_state()
        b = sampler.sample(32, generator=torch.Generator().manual_seed(7))
        assert torch.equal(a, b)
        assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched


def test_callable_sampler_validates_output():
    s = CallableSampler(lambda n: torch.randn(n, 3, dtype=torch.float64))
    x = s.sample(4)
    assert x.shape == (4, 3) and x.dtype == torch.float32
    with pytest.raises(
        InputError, match=r"returned 5 samples .* for n=4: it must return exactly n"
    ):
        CallableSampler(lambda n: torch.randn(5, 3)).sample(4)
    with pytest.raises(InputError, match="NaN/Inf"):
        CallableSampler(lambda n: torch.full((n, 2), float("nan"))).sample(3)
    with pytest.raises(InputError, match=r"x\[:, None\]"):
        CallableSampler(lambda n: torch.randn(n)).sample(3)


class _PairDataset(Dataset):
    def __init__(self) -> None:
        self.x = torch.arange(12, dtype=torch.float32).reshape(4, 1, 3)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return self.x[i], i


class _ListDataset(Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        return [1.0, 2.0]


def test_dataset_sampler_tuples_and_tensors():
    s = DatasetSampler(_PairDataset())
    assert s.shape == (1, 3) and len(s) == 4
    x = s.sample(16)
    assert x.shape == (16, 1, 3) and x.dtype == torch.float32
    assert set(x[:, 0, 0].tolist()) <= {0.0, 3.0, 6.0, 9.0}
    y = DatasetSampler(TensorDataset(torch.randn(6, 2))).sample(3)
    assert y.shape == (3, 2)


def test_dataset_sampler_errors():
    with pytest.raises(InputError, match="ToTensor"):
        DatasetSampler(_ListDataset())
    with pytest.raises(InputError, match="is empty"):
        DatasetSampler(TensorDataset(torch.randn(0, 2)))


class _Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(2)


def test_as_sampler_dispatch():
    data = torch.randn(8, 2)
    assert isinstance(as_sampler(data), TensorSampler)
    assert isinstance(as_sampler(data.numpy()), TensorSampler)
    moons = toy("moons")
    assert as_sampler(moons) is moons
    assert isinstance(as_sampler(_PairDataset()), DatasetSampler)
    assert isinstance(as_sampler(lambda n: torch.randn(n, 2)), CallableSampler)
    with pytest.raises(InputError, match=r"source must be .*\.sample\(n\).*Dataset.*callable"):
        as_sampler([1, 2, 3], name="source")
    with pytest.raises(InputError, match="IterableDataset"):
        as_sampler(_Stream())
    with pytest.raises(InputError, match=r"source has shape \(3,\)"):
        as_sampler(torch.randn(3), name="source")


def test_sample_shape():
    assert sample_shape(TensorSampler(torch.randn(5, 1, 4, 4))) == (1, 4, 4)
    assert sample_shape(toy("mixture_1d")) == (1,)
    assert sample_shape(CallableSampler(lambda n: torch.randn(n, 7))) == (7,)


# ----------------------------------------------------------------------------- toy datasets


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_every_toy_dataset_shape_dtype_finite(name):
    s = toy(name)
    x = s.sample(1000)
    assert x.shape == (1000, s.dim) and s.shape == (s.dim,)
    assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert name in repr(s)


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_every_toy_dataset_whitens(name):
    torch.manual_seed(1)
    x = toy(name, whiten=True).sample(N)
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1]), atol=0.1)
    assert torch.allclose(x.std(0), torch.ones(x.shape[1]), atol=0.1)


def test_whitening_is_deterministic_and_leaves_global_rng():
    state = torch.get_rng_state()
    a, b = toy("swiss_roll", whiten=True), toy("swiss_roll", whiten=True)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)


def test_gaussian_moments():
    torch.manual_seed(0)
    x = toy("gaussian").sample(N)
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.03)
    assert torch.allclose(torch.cov(x.T), torch.eye(2), atol=0.05)
    y = toy("gaussian", dim=3, mean=[1.0, 2.0, 3.0], std=0.5).sample(N)
    assert torch.allclose(y.mean(0), torch.tensor([1.0, 2.0, 3.0]), atol=0.03)
    assert torch.allclose(y.std(0), torch.full((3,), 0.5), atol=0.03)


def test_uniform_square_bounds_and_variance():
    torch.manual_seed(0)
    x = toy("uniform_square").sample(N)
    assert float(x.abs().max()) <= 2.0
    assert torch.allclose(x.var(0), torch.full((2,), 16 / 12), rtol=0.05)
    y = toy("uniform_square", side=1.0).sample(N)
    assert float(y.abs().max()) <= 0.5


def test_circles_on_unit_and_noisy_circles():
    norms = toy("unit_circle").sample(1000).norm(dim=1)
    assert torch.allclose(norms, torch.ones(1000), atol=1e-5)
    r = toy("noisy_circle", radius=3.0, noise=0.1).sample(N).norm(dim=1)
    assert abs(float(r.mean()) - 3.0) < 0.02 and 0.05 < float(r.std()) < 0.15
    r = toy("circles", radius=2.0, factor=0.5, noise=0.0).sample(N).norm(dim=1)
    inner = torch.isclose(r, torch.tensor(1.0), atol=1e-5)
    outer = torch.isclose(r, torch.tensor(2.0), atol=1e-5)
    assert bool((inner | outer).all()) and 0.45 < float(inner.float().mean()) < 0.55


def test_moons_two_components():
    x = toy("moons", noise=0.0).sample(N)
    upper = torch.isclose((x - torch.tensor([-0.5, -0.25])).norm(dim=1), torch.tensor(1.0))
    upper &= x[:, 1] >= -0.25 - 1e-5
    lower = torch.isclose((x - torch.tensor([0.5, 0.25])).norm(dim=1), torch.tensor(1.0))
    lower &= x[:, 1] <= 0.25 + 1e-5
    assert bool((upper | lower).all())
    assert 0.45 < float(upper.float().mean()) < 0.55


def test_blobs_and_grid_modes():
    torch.manual_seed(0)
    for name, k in [("3blobs", 3), ("8blobs", 8), ("grid", 4), ("gaussian_mixture", 8)]:
        s = toy(name, std=0.1)
        x = s.sample(N)
        if name == "grid":
            centres = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
        else:
            angle = 2 * math.pi * torch.arange(k) / k
            centres = 4.0 * torch.stack([angle.cos(), angle.sin()], dim=1)
        d, idx = torch.cdist(x, centres).min(dim=1)
        assert float(d.max()) < 1.0, name
        counts = torch.bincount(idx, minlength=k).float() / N
        assert torch.allclose(counts, torch.full((k,), 1 / k), atol=0.02), name
    x = toy("gaussian_mixture", centers=[[0.0, 0.0, 10.0], [5.0, 5.0, 5.0]], std=0.1).sample(99)
    assert x.shape == (99, 3)


def test_mixture_1d_modes():
    torch.manual_seed(0)
    for kwargs, centres in [({}, [-9.0, 0.0, 9.0]), ({"components": 2}, [-4.5, 4.5])]:
        x = toy("mixture_1d", **kwargs).sample(N)[:, 0]
        c = torch.tensor(centres)
        idx = (x[:, None] - c).abs().argmin(dim=1)
        for j, centre in enumerate(centres):
            part = x[idx == j]
            assert abs(float(part.mean()) - centre) < 0.1
            assert abs(len(part) / N - 1 / len(centres)) < 0.02
    x = toy("mixture_1d", centers=[-1.0, 20.0], std=0.01).sample(1000)
    assert set(x.round().flatten().tolist()) == {-1.0, 20.0}


def test_swiss_roll_and_s_curve_support():
    r = toy("swiss_roll", noise=0.0).sample(N).norm(dim=1)
    assert float(r.min()) >= 1.5 * math.pi / 7.5 - 1e-4
    assert float(r.max()) <= 4.5 * math.pi / 7.5 + 1e-4
    x = toy("s_curve", noise=0.0).sample(N)
    assert float(x[:, 0].abs().max()) <= 1.0 + 1e-5 and float(x[:, 1].abs().max()) <= 2.0 + 1e-5
    # every point is on one of the two unit circles centred at (0, 1) and (0, -1)
    d = torch.minimum(
        (x - torch.tensor([0.0, 1.0])).norm(dim=1), (x - torch.tensor([0.0, -1.0])).norm(dim=1)
    )
    assert torch.allclose(d, torch.ones(N), atol=1e-4)


def test_letters_ot():
    x = toy("letters", noise=0.0).sample(N)
    assert float(x[:, 1].abs().max()) <= 1.0 + 1e-5
    left, right = x[x[:, 0] < -0.3], x[x[:, 0] > -0.3]
    # O: a ring of radius 1 around the left half's centre
    ring = (left - torch.tensor([-1.3, 0.0])).norm(dim=1)
    assert torch.allclose(ring, torch.ones(len(ring)), atol=1e-4)
    # T: points on the top bar (y = 1) or the stem (x = 1.3)
    on_t = torch.isclose(right[:, 1], torch.tensor(1.0)) | torch.isclose(
        right[:, 0], torch.tensor(1.3)
    )
    assert bool(on_t.all()) and len(right) > N / 4
    assert toy("letters", letters="lot").sample(10).shape == (10, 2)
    with pytest.raises(InputError, match=r"unsupported: \['Q'\].*letters OTIL"):
        toy("letters", letters="OQT")


def test_toy_unknown_name_suggests_close_match():
    with pytest.raises(InputError) as info:
        toy("moon")
    msg = str(info.value)
    assert "unknown toy dataset 'moon'" in msg and "did you mean 'moons'" in msg
    assert "swiss_roll" in msg  # lists the available names
    with pytest.raises(InputError, match="did you mean 'swiss_roll'"):
        toy("swissroll")


def test_toy_unknown_kwarg_names_valid_ones():
    with pytest.raises(InputError, match=r"unknown option\(s\) \['sigma'\].*'noise'"):
        toy("moons", sigma=0.1)


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("gaussian", {"std": 0.0}, "gaussian: std must be a positive number"),
        ("gaussian", {"dim": 2, "mean": [1.0, 2.0, 3.0]}, "list of 2 numbers"),
        ("moons", {"noise": -1.0}, "moons: noise must be a number >= 0"),
        ("circles", {"factor": 1.5}, r"factor .* must be in \(0, 1\)"),
        ("gaussian_mixture", {"n_components": 0}, "n_components must be a positive integer"),
        ("gaussian_mixture", {"centers": [[0, 1], [2]]}, "equal-length coordinate lists"),
        ("mixture_1d", {"centers": [[0, 1], [2, 3]]}, "flat list of numbers"),
        ("letters", {"letters": "I", "noise": 0.0, "whiten": True}, "zero variance"),
    ],
)
def test_toy_bad_parameters(name, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        toy(name, **kwargs)


# ----------------------------------------------------------------------------- seeded parts

RECIPE_PARTS = [(0.0, 0.45), (0.45, 0.9), (0.9, 1.0), (0.0, 0.8), (0.8, 1.0)]


@pytest.mark.parametrize("n", [1797, 183, 5000, 5958, 6000, 202599])
@pytest.mark.parametrize("seed", [0, 3])
def test_recipe_parts_are_unchanged_slices_of_one_seeded_shuffle(n, seed):
    """The recipes' parts of digits (all, or one class), MNIST / Fashion-MNIST / CIFAR-10
    classes and CelebA are the slices ``[int(start n), int(end n))`` they were before
    ``part_indices`` became a view of ``split_indices``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for start, end in RECIPE_PARTS:
        assert torch.equal(part_indices(n, (start, end), seed), order[int(start * n):int(end * n)])
    a, b, test = split_indices(n, (0.45, 0.45, 0.1), seed)
    assert torch.equal(a, part_indices(n, (0.0, 0.45), seed))
    assert torch.equal(b, part_indices(n, (0.45, 0.9), seed))
    assert torch.equal(test, part_indices(n, (0.9, 1.0), seed))


def test_digits_parts_sizes_and_errors():
    sizes = [len(part_indices(1797, part)) for part in RECIPE_PARTS]
    assert sizes == [808, 809, 180, 1437, 360]
    held_out = load_dataset("digits", part=(0.9, 1.0))
    assert held_out.shape == (180, 1, 8, 8)
    with pytest.raises(InputError, match="0 <= start < end <= 1"):
        part_indices(10, (0.5, 0.5))
    with pytest.raises(InputError, match="seed must be an integer >= 0"):
        part_indices(10, (0.0, 0.5), seed=-1)
