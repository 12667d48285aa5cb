"""Where a run's metrics and pictures go: ``train.loggers`` chooses the backends.

Every backend gets the same calls from the trainer (rank 0, with a run folder): the logged rows'
scalars, the pictures of each evaluation and the warnings' text.

============  ==============================================  ==============================
name          writes                                          needs
============  ==============================================  ==============================
jsonl         ``metrics.jsonl``: one JSON object per row      always on
tensorboard   ``tensorboard/events.out.tfevents.*``           ``pip install "otmap[tensorboard]"``
wandb         ``wandb/`` (a W&B run; ``WANDB_MODE=offline``   ``pip install "otmap[wandb]"``
              keeps it local, ``wandb sync`` uploads it)
============  ==============================================  ==============================
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from otmap.errors import InputError

#: the backends ``train.loggers`` may name
LOGGER_NAMES = ("jsonl", "tensorboard", "wandb")

#: a picture: a PNG file or an ``[H, W, 3]`` array (uint8, or floats in [0, 1])
Image = str | Path | np.ndarray


class Logger:
    """A logging backend. ``step`` is the training step; the defaults do nothing."""

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """One logged row: ``{name: value}`` at ``step``."""

    def log_image(self, step: int, tag: str, image: Image) -> None:
        """A picture at ``step`` under ``tag`` (e.g. ``plots/transport``)."""

    def log_text(self, step: int, tag: str, text: str) -> None:
        """A message at ``step`` under ``tag`` (e.g. ``warnings/diverging``)."""

    def close(self) -> None:
        """Flush and release the backend."""


class JsonlLogger(Logger):
    """``metrics.jsonl``: one line ``{"step": step, **scalars}`` per row, appended (the file is
    opened for each row, so a run stopped at any point leaves whole lines; the trainer rewrites
    it on resume and rollback). Pictures are the trainer's ``plots/`` folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **scalars}) + "\n")


class TensorBoardLogger(Logger):
    """TensorBoard event files in ``log_dir`` (``tensorboard --logdir RUN/tensorboard``):
    scalars under their own names, pictures with ``add_image``, warnings with ``add_text``;
    flushed after every row so a running TensorBoard sees each evaluation.

    ``start_step``: the step the run starts from; events logged after it by an earlier, stopped
    run in the same folder are purged (TensorBoard's ``purge_step``), and so are those after a
    step logged again (a rollback)."""

    def __init__(self, log_dir: str | Path, start_step: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise InputError(f"train.loggers: 'tensorboard' needs the tensorboard package "
                             f'({err}); pip install "otmap[tensorboard]"') from None
        self._writer_class, self.log_dir = SummaryWriter, Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir), purge_step=start_step + 1)
        self.step = start_step

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        if step < self.step:  # a rollback: drop what was logged after step
            self.writer.close()
            self.writer = self._writer_class(str(self.log_dir), purge_step=step + 1)
        self.step = step
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_image(self, step: int, tag: str, image: Image) -> None:
        self.writer.add_image(tag, _rgb(image), step, dataformats="HWC")
        self.writer.flush()

    def log_text(self, step: int, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger(Logger):
    """A Weights & Biases run in ``run_dir/wandb`` (project ``$WANDB_PROJECT``, else
    ``otmap``; name and config from the run's record). ``WANDB_MODE=offline`` keeps it on disk
    for a later ``wandb sync``. The training step is logged as the metric ``step`` and every
    metric is drawn against it, so rows logged again after a rollback are kept."""

    def __init__(self, run_dir: str | Path, record: dict) -> None:
        try:
            import wandb
        except ImportError as err:
            raise InputError(f"train.loggers: 'wandb' needs the wandb package ({err}); "
                             f'pip install "otmap[wandb]"') from None
        self._wandb = wandb
        self.run = wandb.init(dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", "otmap"),
                              name=record.get("name"), config=record,
                              settings=wandb.Settings(console="off"))
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log({"step": step, **scalars})

    def log_image(self, step: int, tag: str, image: Image) -> None:
        picture = str(image) if isinstance(image, str | Path) else image
        self.run.log({"step": step, tag: self._wandb.Image(picture)})

    def log_text(self, step: int, tag: str, text: str) -> None:
        self.run.log({"step": step, tag: text})

    def close(self) -> None:
        """Finish the run (W&B's service may write the last of an offline run's files after
        this returns, at the latest when the process exits; ``wandb.teardown()`` waits)."""
        self.run.finish()


def check_logger_names(names: str | Iterable[str]) -> list[str]:
    """``train.loggers`` (a name or a list of names) as a list without repeats, ``jsonl``
    first; :class:`InputError` naming the valid ones for anything else."""
    listed = [names] if isinstance(names, str) else names
    if not isinstance(listed, Iterable) or not all(isinstance(n, str) for n in listed):
        raise InputError(f"train.loggers must be a list of names from {list(LOGGER_NAMES)}, "
                         f"got {names!r}")
    for name in listed:
        if name not in LOGGER_NAMES:
            raise InputError(f"train.loggers: unknown logger {name!r}; valid names: "
                             f"{list(LOGGER_NAMES)}")
    return list(dict.fromkeys(["jsonl", *listed]))


def build_loggers(names: str | Iterable[str], run_dir: str | Path | None, record: dict,
                  start_step: int = 0) -> list[Logger]:
    """The backends ``names`` writing into ``run_dir`` (``metrics.jsonl`` always; none without
    a run folder, the names still checked). ``start_step``: the step the run starts (or
    resumes) from."""
    names = check_logger_names(names)
    if run_dir is None:
        return []
    run_dir = Path(run_dir)
    built: list[Logger] = []
    try:
        for name in names:
            if name == "jsonl":
                built.append(JsonlLogger(run_dir / "metrics.jsonl"))
            elif name == "tensorboard":
                built.append(TensorBoardLogger(run_dir / "tensorboard", start_step))
            else:
                built.append(WandbLogger(run_dir, record))
    except BaseException:
        for logger in built:
            logger.close()
        raise
    return built


def _rgb(image: Image) -> np.ndarray:
    """``image`` as an ``[H, W, 3]`` uint8 array (a PNG file is read)."""
    if isinstance(image, str | Path):
        with PILImage.open(image) as picture:
            return np.asarray(picture.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return array
