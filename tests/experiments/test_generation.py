"""Image generation end to end on CPU: recipes build and step, sample, eval --fid."""

from __future__ import annotations

import json

import pytest
import torch

from otmap import load
from otmap.cli import main

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


def test_digits_generate_train_sample_eval(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OTMAP_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "digits-generate", *TINY, "--out", str(run)]) == 0
    assert (run / "plots" / "samples.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "s.pt")]) == 0
    assert torch.load(tmp_path / "s.pt").shape == (5, 1, 16, 16)
    capsys.readouterr()
    assert main(["eval", str(run), "--fid", "--n", "200"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_reference"] == 360  # the 20 % of digits training never saw
    assert summary["fid"] > summary["fid_real_halves"] > 0  # 2 steps: far from the data
    assert 0 <= summary["classes_covered"] <= 10 and sum(summary["class_counts"]) == 200
