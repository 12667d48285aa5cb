"""Image generation end to end on CPU: recipes build and step, sample, eval --fid; the held-out
evaluator against samples whose answer is known (real held-out digits, a constant image)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from otmap import load
from otmap.cli import main
from otmap.data.images import load_digits
from otmap.data.specs import part_indices
from otmap.errors import InputError
from otmap.experiments.evaluation import evaluate_generator
from otmap.metrics.features import DigitsFeatures

TINY = ["train.batch_size=4", "train.eval_samples=16", "train.log_every=1", "train.eval_every=2",
        "train.checkpoint_every=2", "train.steps=2", "--quiet"]

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.mark.parametrize(("recipe", "fake_target"), [
    pytest.param("otm-mnist-32", "{dataset: digits, size: 32, channels: 3}",
                 marks=pytest.mark.slow),
    ("otm-cifar10-32", "{dataset: digits, size: 32, channels: 3}"),
    pytest.param("otm-celeba-64", "{dataset: digits, size: 64, channels: 3}",
                 marks=pytest.mark.slow),
])
def test_paper_scale_recipes_build_and_step(recipe, fake_target, tmp_path, capsys):
    # the paper's networks and settings, on digits standing in for the missing dataset
    assert main(["train", recipe, f"target={fake_target}", *TINY, "--out",
                 str(tmp_path / "run")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert rows[-1]["step"] == 2 and "gradient_optimality" in rows[-1]
    size = 64 if "celeba" in recipe else 32
    assert load(tmp_path / "run").sample(3).shape == (3, 3, size, size)


def test_missing_dataset_names_the_expected_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "otm-mnist-32", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "data/mnist" in err


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    """A cache folder holding the digits classifier (trained once for the module)."""
    folder = tmp_path_factory.mktemp("cache")
    DigitsFeatures.load_or_train(cache_dir=folder, size=16)
    return folder


def test_digits_generate_train_sample_eval(tmp_path, capsys, monkeypatch, digits_cache):
    monkeypatch.setenv("OTMAP_CACHE", str(digits_cache))
    run = tmp_path / "run"
    assert main(["train", "digits-generate", *TINY, "--out", str(run)]) == 0
    assert (run / "plots" / "samples.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "s.pt")]) == 0
    assert torch.load(tmp_path / "s.pt").shape == (5, 1, 16, 16)
    capsys.readouterr()
    assert main(["eval", str(run), "--fid", "--n", "200"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["n_reference"] == 360  # the 20 % of digits training never saw
    assert (summary["n_real"], summary["real_draws"]) == (200, 5)  # the yardstick's sizes
    assert summary["fid"] > summary["fid_real"] > 0  # 2 steps: far from the data
    assert sum(summary["class_counts"]) == 200 and len(summary["class_counts"]) == 10
    # covered: at least a quarter of the uniform share, 200 / 10 / 4 = 5 samples
    assert summary["coverage_min_share"] == 0.025
    assert summary["classes_covered"] == sum(c >= 5 for c in summary["class_counts"])
    assert summary["fid_ratio"] == pytest.approx(summary["fid"] / summary["fid_real"])
    # both spaces on stderr, the learned one first
    lines = [line for line in captured.err.splitlines() if line.startswith("FID")]
    assert "(digits16)" in lines[0] and "(pixels-random-d64-s0)" in lines[1]
    assert "200 real images" in lines[0]
    # the unlearned space as the first one: no classifier, no coverage
    assert main(["eval", str(run), "--fid", "--n", "200", "--features", "pixels-random"]) == 0
    pixels = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pixels["features"] == pixels["features_pixels"] == "pixels-random-d64-s0"
    assert pixels["fid"] == pytest.approx(pixels["fid_pixels"])
    assert pixels["fid_pixels"] == pytest.approx(summary["fid_pixels"])  # seed 0: same samples
    assert "classes_covered" not in pixels
    # 1797 - 360 = 1437 digits outside the reference: the yardstick has no more to draw
    assert main(["eval", str(run), "--fid", "--n", "1438"]) == 2
    assert "--n 1437" in capsys.readouterr().err
    assert main(["eval", str(run), "--fid", "--reference-part", "0.8"]) == 2
    assert "START,END" in capsys.readouterr().err


# ------------------------------------------------ the evaluator on samples of known answer

#: the target spec of digits-generate: training saw part [0, 0.8], the evaluator holds out the rest
TARGET = {"dataset": "digits", "size": 16, "part": [0.0, 0.8]}


class FixedSamples:
    """A stand-in for a trained generator whose samples are given images."""

    config = {"target": TARGET}

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def sample(self, n: int) -> torch.Tensor:
        assert n == len(self.images)
        return self.images.clone()


@pytest.fixture(scope="module")
def digits():
    """All 1797 digits at 16x16 with labels, and the indices of the held-out 20 %."""
    x, y = load_digits(size=16)
    return x, y, part_indices(len(x), (0.8, 1.0)), part_indices(len(x), (0.0, 0.8))


def _evaluate(images, cache):
    return evaluate_generator(FixedSamples(images), n=len(images), cache_dir=cache)


def _features(images, cache) -> np.ndarray:
    extractor = DigitsFeatures.load_or_train(cache_dir=cache, size=16).eval()
    with torch.no_grad():
        return extractor(images).double().numpy()


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    """FID by the textbook formula with scipy's general matrix square root (not otmap's
    eigendecomposition route)."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * cross))


def test_the_held_out_digits_themselves_score_zero_and_cover_every_class(digits, digits_cache):
    x, y, held_out, seen = digits
    out = _evaluate(x[held_out], digits_cache)
    assert out["n_reference"] == out["n_real"] == len(held_out) == 360
    assert out["fid"] == pytest.approx(0, abs=1e-6)  # the same set as the reference
    assert out["fid_ratio"] < 1e-6
    assert out["classes_covered"] == 10
    # a 99 % accurate classifier: the counts are the labels' hand count up to a few mistakes
    truth = torch.bincount(y[held_out], minlength=10)
    assert int((torch.tensor(out["class_counts"]) - truth).abs().sum()) <= 2 * 4
    # the yardstick: FID of 360 real digits outside the reference to it, as own draws give it
    # (two halves of all digits score 12, less than half of it: FID falls with more samples)
    generator = torch.Generator().manual_seed(1)
    features, reference = _features(x[seen], digits_cache), _features(x[held_out], digits_cache)
    own = [_frechet(features[torch.randperm(len(seen), generator=generator)[:360].numpy()],
                    reference) for _ in range(10)]
    assert 0.7 * np.mean(own) < out["fid_real"] < 1.4 * np.mean(own)
    assert 0 < out["fid_real_std"] < np.mean(own)


def test_the_yardstick_scores_every_real_image_outside_the_reference(digits, digits_cache):
    """Reference part [0.5, 1] and n = the 898 digits of [0, 0.5]: every draw is all of them,
    so the yardstick is their FID to the reference exactly, with no spread, and those digits
    as samples score a ratio of 1."""
    x = digits[0]
    outside = x[part_indices(len(x), (0.0, 0.5))]
    out = evaluate_generator(FixedSamples(outside), n=len(outside), reference_part=(0.5, 1.0),
                             cache_dir=digits_cache)
    assert (out["n_real"], out["n_reference"]) == (898, 1797 - 898)
    expected = _frechet(_features(outside, digits_cache),
                        _features(x[part_indices(len(x), (0.5, 1.0))], digits_cache))
    assert out["fid_real"] == pytest.approx(expected, rel=1e-4)
    assert out["fid_real_std"] == pytest.approx(0, abs=1e-6 * expected)
    assert out["fid_ratio"] == pytest.approx(1, abs=1e-6)
    assert out["fid_pixels_ratio"] == pytest.approx(1, abs=1e-6)
    with pytest.raises(InputError, match=r"898 outside .*--n 898"):
        evaluate_generator(FixedSamples(x[:899]), n=899, reference_part=(0.5, 1.0),
                           cache_dir=digits_cache)


@pytest.mark.parametrize(("n", "reference_part", "fragment"), [
    (100, (0.0, 1.0), r"has 0 outside .* smaller reference part"),
    (100, (0.9, 0.1), r"START < END"),
    (100, (0.8,), r"START, END"),
    (1, None, r"n must be an integer >= 2, got 1"),
])
def test_bad_sizes_and_parts_name_the_fix(n, reference_part, fragment, digits, digits_cache):
    with pytest.raises(InputError, match=fragment):
        evaluate_generator(FixedSamples(digits[0][:n]), n=n, reference_part=reference_part,
                           cache_dir=digits_cache)


def test_held_out_digits_of_three_classes_cover_three(digits, digits_cache):
    x, y, held_out, _ = digits
    chosen = held_out[torch.isin(y[held_out], torch.tensor([0, 3, 6]))]
    out = _evaluate(x[chosen], digits_cache)
    assert out["classes_covered"] == 3
    assert out["class_counts"] == torch.bincount(y[chosen], minlength=10).tolist()
    expected = _frechet(_features(x[chosen], digits_cache), _features(x[held_out], digits_cache))
    assert out["fid"] == pytest.approx(expected, rel=1e-4)
    assert out["fid_ratio"] > 10  # three classes of ten are far from the data


@pytest.mark.parametrize("n", [60, 360])
def test_real_digits_training_saw_score_near_the_yardstick(n, digits, digits_cache):
    """n real digits of the training part against the 360 held-out ones: a ratio near 1 in
    both spaces at any n (two halves of all digits as the yardstick gave 2.4 to 8.5 here),
    every class covered."""
    x, y, held_out, seen = digits
    samples = x[seen[500:500 + n]]
    out = _evaluate(samples, digits_cache)
    expected = _frechet(_features(samples, digits_cache), _features(x[held_out], digits_cache))
    assert out["fid"] == pytest.approx(expected, rel=1e-4)
    assert 0.5 < out["fid_ratio"] < 1.6  # the learned space is noisy at these sizes
    assert 0.8 < out["fid_pixels_ratio"] < 1.25
    # 1/4 of the uniform share: n / 40 samples (the 60 digits hold a single 8: not covered)
    counts = out["class_counts"]
    assert out["classes_covered"] == sum(40 * c >= n for c in counts) == (10 if n == 360 else 9)


def test_a_map_with_one_constant_image_covers_one_class(digits, digits_cache):
    x, y, held_out, _ = digits
    image = x[held_out[:1]]
    out = _evaluate(image.repeat(100, 1, 1, 1), digits_cache)
    assert out["classes_covered"] == 1
    assert out["class_counts"][int(y[held_out[0]])] == 100
    # zero sample covariance: FID = |f(image) - mu_ref|^2 + tr(S_ref) exactly
    f, ref = _features(image, digits_cache)[0], _features(x[held_out], digits_cache)
    closed = ((f - ref.mean(0)) ** 2).sum() + np.trace(np.cov(ref, rowvar=False))
    assert out["fid"] == pytest.approx(closed, rel=1e-5)
    assert out["fid_ratio"] > 30 and out["fid_pixels_ratio"] > 10


def _predicted(images, cache) -> torch.Tensor:
    extractor = DigitsFeatures.load_or_train(cache_dir=cache, size=16).eval()
    with torch.no_grad():
        return extractor.classify(images).argmax(1)


def test_a_class_needs_a_quarter_of_the_uniform_share_to_be_covered(digits, digits_cache):
    """1000 samples, copies of five digits the classifier reads as five classes: 875, 75 and
    25 of them (25 / 1000 = 1/4 of 1/10) cover three classes, 24 and 1 do not."""
    x, _, held_out, _ = digits
    images = x[held_out]
    predicted = _predicted(images, digits_cache)
    picks = [int(torch.nonzero(predicted == c)[0]) for c in (2, 5, 7, 8, 9)]
    copies = (875, 75, 25, 24, 1)
    samples = torch.cat([images[i].expand(k, -1, -1, -1) for i, k in zip(picks, copies)])
    out = _evaluate(samples, digits_cache)
    assert out["class_counts"] == [0, 0, 875, 0, 0, 75, 0, 25, 24, 1]
    assert out["coverage_min_share"] == 0.025
    assert out["classes_covered"] == 3


def test_coverage_is_against_the_uniform_share_of_the_targets_classes(digits, digits_cache):
    """A target of three classes: the uniform share is 1/3, so a class needs 1/12 of the
    samples, and 24 of 300 (8 %) do not cover it."""
    x, _, held_out, _ = digits
    images = x[held_out]
    predicted = _predicted(images, digits_cache)
    picks = [int(torch.nonzero(predicted == c)[0]) for c in (0, 3, 6)]
    copies = (270, 24, 6)
    samples = torch.cat([images[i].expand(k, -1, -1, -1) for i, k in zip(picks, copies)])
    generator = FixedSamples(samples)
    generator.config = {"target": {**TARGET, "classes": [0, 3, 6]}}
    out = evaluate_generator(generator, n=300, cache_dir=digits_cache)
    assert out["coverage_min_share"] == pytest.approx(1 / 12)
    assert out["classes_covered"] == 1
    assert _evaluate(samples, digits_cache)["classes_covered"] == 2  # ten classes: 2.5 %


def test_samples_are_clamped_to_the_image_range(digits, digits_cache):
    """The evaluator scores clamp(samples, -1, 1): samples 3x too bright score as their
    clamped version does."""
    x, _, held_out, seen = digits
    samples = 3 * x[seen[:200]]
    out = _evaluate(samples, digits_cache)
    expected = _frechet(_features(samples.clamp(-1, 1), digits_cache),
                        _features(x[held_out], digits_cache))
    assert out["fid"] == pytest.approx(expected, rel=1e-4)


def test_the_unlearned_pixel_space_scores_beside_the_learned_one(digits, digits_cache):
    """Fixed random pixel features give the same kind of answer with nothing learned: 0 for
    the reference itself, > 1 ratios for three classes of ten."""
    x, y, held_out, _ = digits
    out = _evaluate(x[held_out], digits_cache)
    assert out["features_pixels"] == "pixels-random-d64-s0"
    assert out["fid_pixels"] == pytest.approx(0, abs=1e-6) and out["fid_pixels_real"] > 0
    chosen = held_out[torch.isin(y[held_out], torch.tensor([0, 3, 6]))]
    out = _evaluate(x[chosen], digits_cache)
    assert out["fid_pixels_ratio"] == pytest.approx(out["fid_pixels"]
                                                    / out["fid_pixels_real"])
    assert out["fid_pixels_ratio"] > 3  # 98 samples: the yardstick is large at this size
