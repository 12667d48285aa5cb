"""The `otmap` command: recipes, train (every artefact), resume, bench --json, errors."""

from __future__ import annotations

import json

import numpy as np
import ot
import pytest
import torch
import yaml

from otmap import load
from otmap.benchmarks.registry import benchmark_pair
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


def test_bench_json_last_line(tmp_path, capsys):
    """The scores on the last line are those of the saved map against the pair's true map,
    recomputed here: the true map from the pair's Gaussians by POT's closed form, L2-UVP and
    cos on 200 000 fresh samples (the CLI's estimate uses 4096)."""
    run = tmp_path / "bench"
    assert main(["bench", "gaussian", "--dim", "2", "--steps", "30", "--json", "--quiet",
                 "--out", str(run)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"l2_uvp", "cos", "steps", "seconds", "bures_l2_uvp"} <= set(summary)
    assert summary["steps"] == 30 and (summary["pair"], summary["dim"]) == ("gaussian", 2)

    pair = benchmark_pair("gaussian", dim=2, seed=0)  # the CLI's default seed
    ms, mt, cs, ct = (t.numpy() for t in (pair.mean_s, pair.mean_t, pair.cov_s, pair.cov_t))
    a, b = ot.gaussian.bures_wasserstein_mapping(ms[None], mt[None], cs, ct)  # y = x @ a + b
    x = np.random.default_rng(0).multivariate_normal(ms, cs, size=200_000)
    truth = x @ a + b
    result = load(run)
    with torch.no_grad():
        predicted = result.transport(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
        inverse = result.inverse(torch.as_tensor(truth, dtype=torch.float32)).double().numpy()
    l2_uvp = 100 * ((predicted - truth) ** 2).sum(1).mean() / np.trace(ct)
    assert summary["l2_uvp"] == pytest.approx(l2_uvp, rel=0.05)
    # normalising by Var(mu) instead of Var(nu) would be 33 % off for this pair
    assert abs(np.trace(cs) / np.trace(ct) - 1) > 0.2
    d_true, d_pred = truth - x, predicted - x
    cos = (d_true * d_pred).sum(1).mean() / np.sqrt(
        (d_true**2).sum(1).mean() * (d_pred**2).sum(1).mean())
    assert summary["cos"] == pytest.approx(cos, abs=0.01)
    inverse_l2_uvp = 100 * ((inverse - x) ** 2).sum(1).mean() / np.trace(cs)
    assert summary["inverse_l2_uvp"] == pytest.approx(inverse_l2_uvp, rel=0.05)
    # the linear baseline fits the Gaussians' moments from 20 000 samples: the exact map up
    # to sampling error for a Gaussian pair
    assert 0 <= summary["bures_l2_uvp"] < 0.5


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


def test_bench_reports_time_to_target_l2_uvp(tmp_path, capsys):
    """Evaluations at steps 5, 10, 15, 20: any L2-UVP is below 1e9 % at the first one; none
    is 0 %. The times are those of the run's metrics rows (its wall clock since its start)."""
    run = tmp_path / "bench"
    assert main(["bench", "gaussian", "--dim", "2", "--steps", "20", "--eval-every", "5",
                 "--target-l2-uvp", "1e9", "--target-l2-uvp", "0", "--json", "--quiet",
                 "--out", str(run)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "l2_uvp" in r]
    assert [r["step"] for r in evaluated] == [5, 10, 15, 20]
    assert summary["step_to_target"] == {"1e+09": 5, "0": None}
    assert summary["seconds_to_target"] == {"1e+09": round(evaluated[0]["time"], 2), "0": None}
    assert 0 < summary["seconds_to_target"]["1e+09"] <= summary["seconds"]


def test_bench_targets_as_a_comma_list_without_a_run_folder(capsys):
    assert main(["bench", "gaussian", "--dim", "2", "--steps", "4", "--eval-every", "2",
                 "--target-l2-uvp", "1e9,0", "--quiet"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "L2-UVP <= 1e+09%: " in line and "(step 2)" in line
    assert line.endswith("L2-UVP <= 0%: not reached")


@pytest.mark.parametrize("value", ["-1", "nan", "one", ","])
def test_bench_refuses_bad_targets(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "gaussian", "--dim", "2", "--target-l2-uvp", value])
    assert exit_info.value.code == 2
    assert "L2-UVP values" in capsys.readouterr().err


def test_a_target_needs_a_benchmark_pair():
    from otmap.errors import InputError
    from otmap.experiments import runner

    with pytest.raises(InputError, match="needs a benchmark pair"):
        runner.run(load_run_config(DEFAULT_RECIPE), None, target_l2_uvp=[1.0])
