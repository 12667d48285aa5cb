"""The `otmap` command: recipes, train (every artefact), resume, bench --json, errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from otmap import load
from otmap.cli import main
from otmap.experiments.recipes import DEFAULT_RECIPE, load_run_config, recipe_names

FAST = ["train.steps=20", "train.log_every=10", "train.eval_every=20", "train.checkpoint_every=10",
        "train.batch_size=64", "train.eval_samples=200", "map.hidden=[32,32]",
        "potential.hidden=[32,32]"]


def test_recipes_lists_default_and_otm_toys(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in (DEFAULT_RECIPE, "otm-toy-moons", "otm-toy-swiss-roll"):
        assert name in out


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_parses(name):
    config = load_run_config(name)
    assert config.train.steps >= 1
    assert config.source is not None or config.benchmark is not None


def test_train_toy_recipe_writes_every_artefact(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "otm-toy-moons", *FAST, "train.k_map=2", "--out", str(out),
                 "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 20
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["k_map"] == 2 and config["cost"]["name"] == "InnerProduct"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    assert "energy" in rows[-1] and "loss_map" in rows[0]
    for png in ("training.png", "transport.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = load(out)
    assert result.transport(torch.zeros(3, 2)).shape == (3, 2)


def test_train_resume_continues_to_the_same_map(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    common = [*FAST, "train.lr_schedule=constant", "--quiet"]
    assert main(["train", DEFAULT_RECIPE, *common, "--out", str(full)]) == 0
    assert main(["train", DEFAULT_RECIPE, *common, "train.steps=10", "--out", str(part)]) == 0
    assert main(["train", DEFAULT_RECIPE, *common, "--out", str(part), "--resume"]) == 0
    x = torch.randn(50, 2)
    assert torch.equal(load(full).transport(x), load(part).transport(x))


def test_resume_without_recipe_uses_the_run_config(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    common = [*FAST, "train.lr_schedule=constant", "--quiet"]
    assert main(["train", "otm-toy-moons", *common, "--out", str(full)]) == 0
    assert main(["train", "otm-toy-moons", *common, "train.steps=10", "--out", str(part)]) == 0
    assert main(["train", "train.steps=20", "--out", str(part), "--resume", "--quiet"]) == 0
    x = torch.randn(50, 2)
    assert torch.equal(load(full).transport(x), load(part).transport(x))


def test_bench_json_last_line(capsys):
    assert main(["bench", "gaussian", "--dim", "2", "--steps", "30", "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"l2_uvp", "cos", "steps", "seconds", "bures_l2_uvp"} <= set(summary)
    assert summary["steps"] == 30 and summary["l2_uvp"] >= 0


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "otm-toy-mons"], "did you mean otm-toy-moons"),
    (["train", DEFAULT_RECIPE, "train.stepz=3"], "did you mean 'steps'"),
    (["train", DEFAULT_RECIPE, "trian.steps=3"], "did you mean 'train'"),
    (["train", DEFAULT_RECIPE, "train.steps=-1"], "positive integer"),
    (["train", DEFAULT_RECIPE, "source.toy=moonz"], "did you mean 'moons'"),
    (["train", "--resume"], "--resume needs --out"),
])
def test_bad_cli_input_names_the_fix(args, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--quiet"]) == 2
    assert fragment in capsys.readouterr().err
