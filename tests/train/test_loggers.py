"""Logging backends (otmap.train.loggers): metrics.jsonl, TensorBoard event files read back with
TensorBoard's own reader, a W&B offline run folder, and the errors for bad names and missing
packages."""

from __future__ import annotations

import json
import sys

import pytest

import otmap
from otmap.errors import InputError
from otmap.train import trainer as trainer_module
from otmap.train.evaluation import DivergenceMonitor
from otmap.train.loggers import JsonlLogger, TensorBoardLogger, build_loggers

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: a 20-step run evaluated at steps 10 and 20
TINY = {"steps": 20, "log_every": 5, "eval_every": 10, "checkpoint_every": 10}


def _accumulator(folder):
    """TensorBoard's reader over every event file in ``folder``, loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


class FiresAtStep20(DivergenceMonitor):
    """A divergence monitor that fires at the evaluation of step 20."""

    def update(self, step: int, value: float) -> bool:
        super().update(step, value)
        self.fired = self.fired or step >= 20
        return step == 20


def test_unknown_logger_names_the_valid_ones(tmp_path, gaussian2d, small_fit_kwargs):
    with pytest.raises(InputError, match=r"'tensorbord'.*\['jsonl', 'tensorboard', 'wandb'\]"):
        build_loggers(["jsonl", "tensorbord"], tmp_path, {})
    with pytest.raises(InputError, match="unknown logger 'mlflow'"):
        otmap.fit(gaussian2d.source, gaussian2d.target, **small_fit_kwargs, steps=2,
                  loggers=["mlflow"])
    assert not list(tmp_path.iterdir())  # nothing built, nothing written


@pytest.mark.parametrize(("name", "module"), [("tensorboard", "torch.utils.tensorboard"),
                                              ("wandb", "wandb")])
def test_missing_package_names_the_extra(tmp_path, monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(InputError, match=rf'pip install "otmap\[{name}\]"'):
        build_loggers([name], tmp_path, {})


def test_jsonl_always_on_and_without_run_folder_nothing(tmp_path):
    assert build_loggers("tensorboard", None, {}) == []  # names checked, nothing built
    loggers = build_loggers([], tmp_path, {})
    assert [type(logger) for logger in loggers] == [JsonlLogger]
    loggers[0].log_scalars(5, {"loss_map": 0.5, "time": 1.25})
    line = '{"step": 5, "loss_map": 0.5, "time": 1.25}\n'  # the format metrics.jsonl always had
    assert (tmp_path / "metrics.jsonl").read_text() == line


def test_tensorboard_run_holds_scalars_pictures_and_warnings(tmp_path, gaussian2d,
                                                             small_fit_kwargs, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setattr(trainer_module, "DivergenceMonitor", FiresAtStep20)
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="diverging"):
        otmap.fit(gaussian2d.source, gaussian2d.target, **small_fit_kwargs, **TINY, run_dir=run,
                  loggers=["tensorboard"])
    events = _accumulator(run / "tensorboard")
    tags = events.Tags()
    assert {"loss_map", "loss_potential", "fidelity", "energy", "diverging", "time"} <= set(
        tags["scalars"])
    assert [e.step for e in events.Scalars("loss_map")] == [5, 10, 15, 20]
    assert [(e.step, e.value) for e in events.Scalars("diverging")] == [(10, 0.0), (20, 1.0)]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [e.value for e in events.Scalars("fidelity")] == pytest.approx(
        [r["fidelity"] for r in rows if "fidelity" in r])
    assert {"plots/training", "plots/transport"} <= set(tags["images"])
    assert [e.step for e in events.Images("plots/transport")] == [10, 20]
    assert events.Images("plots/training")[0].encoded_image_string[:4] == b"\x89PNG"
    text = [t for t in tags["tensors"] if t.startswith("warnings/diverging")]
    assert text, tags["tensors"]
    (message,) = events.Tensors(text[0])
    assert message.step == 20
    assert b"diverging" in message.tensor_proto.string_val[0]


def test_tensorboard_drops_events_after_a_resumed_or_rolled_back_step(tmp_path):
    pytest.importorskip("tensorboard")
    first = TensorBoardLogger(tmp_path)
    for step in (1, 2, 3, 4, 5):
        first.log_scalars(step, {"loss": float(step)})
    first.log_scalars(3, {"rollback": 1.0})  # a rollback to step 3 (its row, as the trainer's)
    first.log_scalars(4, {"loss": 40.0})
    first.close()
    resumed = TensorBoardLogger(tmp_path, start_step=3)  # resumed from a checkpoint of step 3
    resumed.log_scalars(4, {"loss": 400.0})
    resumed.close()
    events = _accumulator(tmp_path)
    points = [(e.step, e.value) for e in events.Scalars("loss")]
    assert points == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 400.0)]
    assert [(e.step, e.value) for e in events.Scalars("rollback")] == [(3, 1.0)]


def test_wandb_offline_writes_its_run_folder(tmp_path, gaussian2d, small_fit_kwargs,
                                             monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # not in $HOME
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    run = tmp_path / "run"
    otmap.fit(gaussian2d.source, gaussian2d.target, **small_fit_kwargs, **TINY, run_dir=run,
              loggers=["wandb"], record={"name": "gauss"})
    wandb.teardown()  # the finished run's transaction log is written out by W&B's service
    (folder,) = (run / "wandb").glob("offline-run-*")
    (history,) = folder.glob("run-*.wandb")
    data = history.read_bytes()
    assert b"fidelity" in data and b"loss_map" in data and b"gauss" in data
    pictures = sorted(p.name for p in (folder / "files" / "media" / "images" / "plots").iterdir())
    assert [p.split("_")[0] for p in pictures] == ["training"] * 2 + ["transport"] * 2
    assert (run / "metrics.jsonl").read_text().count("\n") == 4


def test_cli_override_chooses_the_loggers(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from otmap.cli import main

    out = tmp_path / "run"
    assert main(["train", "otm-toy-moons", "train.steps=4", "train.log_every=2",
                 "train.eval_every=4", "train.batch_size=16", "train.eval_samples=64",
                 "train.k_map=1", "map.hidden=[16]", "potential.hidden=[16]",
                 "train.loggers=[jsonl,tensorboard]", "--out", str(out), "--quiet"]) == 0
    assert [e.step for e in _accumulator(out / "tensorboard").Scalars("fidelity")] == [4]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()] == [2, 4]
