"""Tests of otmap.viz.plots: every figure is a valid PNG and bad shapes are rejected; the
trainer's live pictures (plots/latest/, numbered copies) during a run."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import otmap
from otmap.cli import main
from otmap.core.costs import WeakQuadratic
from otmap.errors import InputError
from otmap.viz.plots import (
    plot_stochastic_2d,
    plot_training_curves,
    plot_transport_1d,
    plot_transport_2d,
    run_title,
    warning_text,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("torch_single_thread")  # the runs' tiny networks


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk of a PNG, asserting the file is one."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0
    return width, height


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def make_rows(n: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for s in range(n):
        row = {
            "step": s * 10,
            "loss_map": 3.0 * math.exp(-s / 50) + 0.1 * abs(rng.standard_normal()),
            "loss_potential": -1.0 + 0.2 * rng.standard_normal(),
            "lr_map": 1e-3,
            "phase": "train",
            "gamma": None if s % 2 else 0.5,
        }
        if s % 20 == 0:
            row["l2_uvp"] = 1e3 * math.exp(-s / 20)
        rows.append(row)
    rows[len(rows) // 2]["loss_map"] = 1e6
    return rows


def test_training_curves_writes_png(tmp_path: Path, rng: np.random.Generator) -> None:
    out = plot_training_curves(make_rows(200, rng), tmp_path / "curves.png", title="run")
    assert out == tmp_path / "curves.png"
    width, height = png_size(out)
    assert width > 600 and height > 300
    assert no_temp_files(tmp_path)


def test_training_curves_tolerates_missing_none_and_strings(tmp_path: Path) -> None:
    rows = [
        {"step": 0, "loss_map": None, "phase": "warmup"},
        {"step": 1, "cost": 1.0, "time": 0.5, "flag": True},
        {"loss_map": float("nan"), "energy": float("inf")},
        {"step": 3, "loss_map": 2.0, "note": "x"},
    ]
    png_size(plot_training_curves(rows, tmp_path / "c.png"))


def test_training_curves_empty_and_non_numeric(tmp_path: Path) -> None:
    png_size(plot_training_curves([], tmp_path / "empty.png", title="nothing"))
    png_size(plot_training_curves([{"step": 0, "phase": "a"}], tmp_path / "strings.png"))


def test_training_curves_many_metrics_and_overwrite(tmp_path: Path) -> None:
    rows = [{"step": s, **{f"m{j}": float(s + j) for j in range(12)}} for s in range(30)]
    path = tmp_path / "sub" / "curves.png"
    png_size(plot_training_curves(rows, path))
    png_size(plot_training_curves(rows[:1], path))
    assert no_temp_files(path.parent)


def test_training_curves_rejects_non_rows(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        plot_training_curves([1, 2], tmp_path / "bad.png")  # type: ignore[list-item]


def rotation_problem(rng: np.random.Generator, n: int = 500) -> tuple[np.ndarray, ...]:
    x = rng.standard_normal((n, 2)) * [1.0, 0.3]
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    return x, x @ rot.T + 2.0, rng.standard_normal((n + 37, 2)) * [0.3, 1.0] + 2.0


@pytest.mark.parametrize("as_tensor", [False, True])
def test_transport_2d(tmp_path: Path, rng: np.random.Generator, as_tensor: bool) -> None:
    x, tx, y = rotation_problem(rng)
    if as_tensor:
        x, tx, y = torch.tensor(x), torch.tensor(tx, requires_grad=True), torch.tensor(y)
    out = plot_transport_2d(x, tx, y, str(tmp_path / "t.png"), title="rot", max_arrows=50)
    assert isinstance(out, Path)
    png_size(out)


def test_transport_2d_survives_outliers_and_tiny_input(tmp_path: Path) -> None:
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]])
    tx = np.array([[1e9, 0.0], [np.nan, 1.0], [2.0, 0.5]])
    png_size(plot_transport_2d(x, tx, x[:1], tmp_path / "t.png", max_points=2))


def test_transport_2d_rejects_bad_shapes(tmp_path: Path) -> None:
    good = np.zeros((10, 2))
    with pytest.raises(InputError, match=r"x must have shape \[n, 2\]"):
        plot_transport_2d(np.zeros((10, 3)), good, good, tmp_path / "t.png")
    with pytest.raises(InputError, match="one row per row of x"):
        plot_transport_2d(good, np.zeros((9, 2)), good, tmp_path / "t.png")
    with pytest.raises(InputError, match="y"):
        plot_transport_2d(good, good, np.zeros(10), tmp_path / "t.png")
    with pytest.raises(ValueError, match="empty"):
        plot_transport_2d(np.zeros((0, 2)), np.zeros((0, 2)), good, tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("as_tensor", [False, True])
def test_transport_1d(tmp_path: Path, rng: np.random.Generator, as_tensor: bool) -> None:
    x = rng.standard_normal((400, 1))
    y = np.concatenate([rng.normal(-2, 0.5, (150, 1)), rng.normal(3, 0.5, (150, 1))])
    tx = np.where(x < 0, 0.5 * x - 2, 0.5 * x + 3)
    if as_tensor:
        x, tx, y = torch.tensor(x)[:, 0], torch.tensor(tx)[:, 0], torch.tensor(y)[:, 0]
    png_size(plot_transport_1d(x, tx, y, tmp_path / "t1.png", title="1d"))


def test_transport_1d_rejects_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\[n, 1\]"):
        plot_transport_1d(np.zeros((5, 2)), np.zeros((5, 1)), np.zeros((5, 1)), tmp_path / "a")
    with pytest.raises(InputError, match="one row per row of x"):
        plot_transport_1d(np.zeros((5, 1)), np.zeros((4, 1)), np.zeros((5, 1)), tmp_path / "a")


@pytest.mark.parametrize("as_tensor", [False, True])
def test_stochastic_2d(tmp_path: Path, rng: np.random.Generator, as_tensor: bool) -> None:
    x, tx, y = rotation_problem(rng, n=300)
    txz = tx[:, None, :] + 0.2 * rng.standard_normal((300, 6, 2))
    if as_tensor:
        x, txz, y = torch.tensor(x), torch.tensor(txz), torch.tensor(y)
    png_size(plot_stochastic_2d(x, txz, y, tmp_path / "s.png", title="stoch", n_inputs=5))


def test_stochastic_2d_input_counts(tmp_path: Path, rng: np.random.Generator) -> None:
    x, tx, y = rotation_problem(rng, n=40)
    txz = tx[:, None, :] + 0.2 * rng.standard_normal((40, 3, 2))
    png_size(plot_stochastic_2d(x, txz, y, tmp_path / "many.png", n_inputs=12))
    png_size(plot_stochastic_2d(x[:3], txz[:3], y, tmp_path / "few.png", n_inputs=8))


def test_stochastic_2d_rejects_bad_shapes(tmp_path: Path) -> None:
    x = np.zeros((10, 2))
    with pytest.raises(InputError, match=r"\[n, k, 2\]"):
        plot_stochastic_2d(x, np.zeros((10, 2)), x, tmp_path / "s.png")
    with pytest.raises(InputError, match=r"\[n, k, 2\]"):
        plot_stochastic_2d(x, np.zeros((10, 0, 2)), x, tmp_path / "s.png")
    with pytest.raises(InputError, match="one row per row of x"):
        plot_stochastic_2d(x, np.zeros((9, 3, 2)), x, tmp_path / "s.png")
    with pytest.raises(InputError, match="n_inputs"):
        plot_stochastic_2d(x, np.zeros((10, 3, 2)), x, tmp_path / "s.png", n_inputs=0)


def test_training_curves_mark_the_monitors_flags(tmp_path: Path, rng: np.random.Generator) -> None:
    rows = make_rows(40, rng)
    for row in rows:
        row["diverging"] = float(row["step"] >= 200)
        row["oscillating"] = 0.0
    assert warning_text(rows) == "warning: diverging since step 200"
    assert run_title("moons", rows) == "moons\nwarning: diverging since step 200"
    assert warning_text(rows[:20]) == "" and run_title("moons", rows[:20]) == "moons"
    rows[-1]["oscillating"] = 1.0
    assert warning_text(rows).endswith("; oscillating (fake solutions?) since step 390")
    png_size(plot_training_curves(rows, tmp_path / "flags.png", title="moons"))
    # only flags and the step: a "no metrics yet" figure, with the warning as its title
    png_size(plot_training_curves([{"step": 1, "diverging": 1.0}], tmp_path / "only.png"))


def test_live_pictures_exist_after_the_first_evaluation(tmp_path: Path, gaussian2d,
                                                        small_fit_kwargs) -> None:
    run = tmp_path / "run"
    seen = []  # at each evaluation: the pictures in plots/latest/, and whether the run ended

    def evaluator(result, x, y) -> dict[str, float]:
        latest = sorted(p.name for p in (run / "plots" / "latest").glob("*.png"))
        seen.append((latest, (run / "plots" / "training.png").exists()))
        return {}

    otmap.fit(gaussian2d.source, gaussian2d.target, **small_fit_kwargs, steps=20, log_every=5,
              eval_every=10, plot_every=2, run_dir=run, evaluator=evaluator)
    pictures = ["training.png", "transport.png"]
    assert seen == [([], False), (pictures, False)]  # drawn at step 10, before the end
    assert sorted(p.name for p in (run / "plots").iterdir()) == [
        "latest", "step-000020", *pictures]  # a numbered copy every 2nd evaluation
    for name in pictures:
        png_size(run / "plots" / "step-000020" / name)
        # the end-of-run pictures are the last evaluation's
        assert (run / "plots" / name).read_bytes() == (run / "plots" / "latest" / name).read_bytes()
    assert no_temp_files(run / "plots" / "latest")


def test_live_pictures_leave_a_stochastic_run_unchanged(tmp_path: Path, gaussian2d,
                                                        small_fit_kwargs) -> None:
    options = {**small_fit_kwargs, "cost": WeakQuadratic(gamma=0.5), "steps": 10,
               "log_every": 5, "eval_every": 5, "plot_every": 1}
    drawn = otmap.fit(gaussian2d.source, gaussian2d.target, **options, run_dir=tmp_path / "run")
    plain = otmap.fit(gaussian2d.source, gaussian2d.target, **options)
    for key, value in plain.map.state_dict().items():
        assert torch.equal(drawn.map.state_dict()[key], value), key
    steps = sorted(p.name for p in (tmp_path / "run" / "plots").glob("step-*"))
    assert steps == ["step-000005", "step-000010"]
    png_size(tmp_path / "run" / "plots" / "latest" / "transport.png")


def test_live_sample_grid_of_an_image_run(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OTMAP_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "digits-generate", "train.batch_size=4", "train.eval_samples=16",
                 "train.log_every=1", "train.eval_every=1", "train.steps=2",
                 "train.plot_every=2", "--quiet", "--out", str(run)]) == 0
    for folder in ("latest", "step-000002"):
        for name in ("samples.png", "training.png"):
            png_size(run / "plots" / folder / name)
    assert not (run / "plots" / "step-000001").exists()
