"""Tests of otmap.metrics.fid and otmap.metrics.features against closed forms and references."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch

from otmap.errors import InputError
from otmap.metrics.features import (
    INCEPTION_WEIGHTS_NAME,
    DigitsFeatures,
    FIDInceptionV3,
    InceptionFeatures,
    _digits_dataset,
    build_extractor,
)
from otmap.metrics.fid import FeatureStats, cached_stats, compute_stats, fid, frechet_distance


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine's cores are shared: torch's thread pool only slows these small runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A digits classifier trained once into a fresh cache folder, with its training facts."""
    cache = tmp_path_factory.mktemp("otmap-cache")
    rng_before = torch.get_rng_state()
    t0 = time.perf_counter()
    model = DigitsFeatures.load_or_train(cache_dir=cache, size=16)
    return SimpleNamespace(
        model=model,
        cache=cache,
        seconds=time.perf_counter() - t0,
        rng_untouched=torch.equal(rng_before, torch.get_rng_state()),
        images=_digits_dataset(16)[0],
    )


def _reference_fid(mu1, s1, mu2, s2) -> float:
    """The reference (pytorch-fid) formula with scipy.linalg.sqrtm."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.0])
    expected = 1.0 + 4.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    as_tensors = [torch.as_tensor(v, dtype=torch.float32) for v in (mu1, np.diag(a), mu2)]
    assert frechet_distance(*as_tensors, np.diag(b)) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_reference_symmetry_and_zero():
    rng = np.random.default_rng(0)
    d = 6
    m1, m2 = rng.normal(size=(2, 20, d))
    s1, s2 = m1.T @ m1 / 20, m2.T @ m2 / 20
    mu1, mu2 = rng.normal(size=(2, d))
    value = frechet_distance(mu1, s1, mu2, s2)
    assert value == pytest.approx(_reference_fid(mu1, s1, mu2, s2), rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(value, rel=1e-12)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_singular_covariances():
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(2, 5, 40))  # n = 5 < d = 40: covariances of rank 4
    s1, s2 = FeatureStats.from_features(f1), FeatureStats.from_features(f2)
    assert np.linalg.matrix_rank(s1.sigma) == 4
    assert s1.fid(s1) == pytest.approx(0.0, abs=1e-9)
    assert s1.fid(s2) > 1.0


def test_frechet_distance_rejects_bad_shapes_and_values():
    with pytest.raises(InputError, match="width"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(InputError, match="NaN"):
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))


def test_feature_stats_from_features_and_npz_round_trip(tmp_path):
    feats = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    stats = FeatureStats.from_features(feats, extractor="demo")
    np.testing.assert_allclose(stats.mu, feats.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(feats.double().numpy().T), rtol=1e-12)
    loaded = FeatureStats.load(stats.save(tmp_path / "s.npz"))
    assert (loaded.n, loaded.extractor) == (50, "demo")
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temporary left over
    with pytest.raises(InputError, match="same extractor"):
        stats.fid(FeatureStats(stats.mu, stats.sigma, 50, "other"))
    with pytest.raises(InputError, match="at least 2"):
        FeatureStats.from_features(feats[:1])


def test_digits_classifier_trains_fast_accurately_and_leaves_rng_alone(digits):
    model = digits.model
    assert model.accuracy > 0.95
    assert digits.seconds < 30
    assert digits.rng_untouched
    assert (model.name, model.dim) == ("digits16", 64)
    with torch.no_grad():
        pred = model.classify(digits.images).argmax(1)
        assert set(pred.tolist()) == set(range(10))
        # 32 px RGB inputs are averaged to grey and resized to the training size
        big = torch.nn.functional.interpolate(digits.images[:64], size=(32, 32), mode="bilinear")
        big_pred = model.classify(big.expand(-1, 3, -1, -1)).argmax(1)
        assert (big_pred == pred[:64]).float().mean() > 0.9
        assert model(digits.images[:5]).shape == (5, 64)


def test_digits_cache_is_reused(digits, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(DigitsFeatures, "train_new", no_training)
    again = build_extractor("digits", cache_dir=digits.cache, size=16)
    assert again.accuracy == digits.model.accuracy
    for key, value in digits.model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)


def test_fid_on_digits_self_split_and_perturbed(digits):
    x, model = digits.images, digits.model
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=gen)
    half_a, half_b = x[perm[: len(x) // 2]], x[perm[len(x) // 2 :]]
    noised = (half_b + torch.randn(half_b.shape, generator=gen)).clamp(-1, 1)
    shifted = torch.roll(half_b, shifts=(2, 2), dims=(2, 3))
    first_five = x[_digits_dataset(16)[1] < 5]  # a generator that dropped half the classes
    stats_a = compute_stats(half_a, model)
    assert fid(half_a, stats_a, model) < 1e-9 * np.trace(stats_a.sigma)
    split = fid(stats_a, half_b, model)  # about 12: finite-sample bias of 900 points in 64-d
    for changed in (noised, shifted, first_five):
        assert fid(stats_a, changed, model) > 5 * split


def test_compute_stats_batching_and_mode(digits):
    model = digits.model.train()
    small = compute_stats(digits.images[:100], model, batch_size=7)
    whole = compute_stats(digits.images[:100], model, batch_size=256)
    assert model.training
    model.eval()
    np.testing.assert_allclose(small.sigma, whole.sigma, rtol=1e-4, atol=1e-4)
    assert (small.n, small.extractor) == (100, "digits16")
    with pytest.raises(InputError, match=r"\[n, c, h, w\]"):
        compute_stats(digits.images[:, 0], model)


def test_cached_stats_round_trip(digits, tmp_path):
    calls = []

    def images():
        calls.append(1)
        return digits.images[:200]

    first = cached_stats("digits-train", images, digits.model, cache_dir=tmp_path)
    second = cached_stats("digits-train", images, digits.model, cache_dir=tmp_path)
    assert len(calls) == 1
    assert (tmp_path / "digits-train-digits16.npz").is_file()
    np.testing.assert_array_equal(first.mu, second.mu)
    assert second.fid(first) < 1e-9 * np.trace(first.sigma)
    with pytest.raises(InputError, match="key"):
        cached_stats("../escape", images, digits.model, cache_dir=tmp_path)


def test_missing_inception_weights_names_the_file(tmp_path):
    with pytest.raises(InputError) as err:
        InceptionFeatures(tmp_path)
    message = str(err.value)
    assert str(tmp_path / INCEPTION_WEIGHTS_NAME) in message
    assert "pytorch-fid" in message and "download" in message
    with pytest.raises(InputError, match="inception"):
        build_extractor("inception", weights_path=tmp_path / "nope.pth")


def test_inception_architecture_loads_its_state_dict_and_runs(tmp_path):
    net = FIDInceptionV3()
    # torchvision's Inception3 (27,161,264 params) minus its aux head, with 1008 classes
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    state = net.state_dict()
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["fc.weight"].shape == (1008, 2048)
    torch.save(state, tmp_path / INCEPTION_WEIGHTS_NAME)
    features = InceptionFeatures(tmp_path)  # strict load
    loaded = features.net.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with torch.no_grad():
        out = features(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 2048) and bool(torch.isfinite(out).all())
    del state["fc.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(InputError, match="fc.bias"):
        InceptionFeatures(tmp_path / "broken.pth")


def test_build_extractor_unknown_name_lists_choices():
    with pytest.raises(InputError, match=r"\['digits', 'inception', 'mnist5k', 'pixels-random'\]"):
        build_extractor("vgg")
