"""Checkpoint files: one dict written atomically with ``torch.save``.

Layout::

    {"format": "otmap-checkpoint", "version": 1, "otmap_version": ...,
     "model": {"map": spec-or-module, "embedding": spec-or-module, "cost": dict,
               "source_shape": [...], "target_shape": [...],
               "map_state": state_dict (the map used for evaluation: EMA when present),
               "potential": spec | None, "potential_state": state_dict | None,
               "noise": dict | None},
     "training": NeuralOT.training_state() + {"rollbacks": int} | None,
     "rng": {"torch": ByteTensor, "cuda": [...]} | None,
     "config": dict,
     "best": {"step", "metric", "value", "fidelity", "potential"}}   (best.pt only)

A model file (``result.save``) is the model only: ``"training"`` is None and there is no
``"rng"`` (model files of older otmap versions hold a training state, which
:func:`otmap.load` keeps in ``result.training``). A run folder's ``checkpoints/`` holds
``last.pt`` (every checkpoint write: the model plus the training state and RNG states that
resume the run exactly), ``best.pt`` (the evaluation with the best ``train.best_metric``; no
training state) and, with ``train.keep_checkpoints=K``, the last K numbered copies
``step-00001000.pt``.

Networks built from a spec (:func:`otmap.nets.build_net`) are stored as their spec and rebuilt
on load; other modules are pickled whole, and loading those needs ``trusted=True``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from otmap.errors import CheckpointError
from otmap.utils.files import atomic_write

FORMAT = "otmap-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
_STEP_PREFIX = "step-"
#: help of the command line's ``--checkpoint`` (``otmap sample|eval|apply``)
CHECKPOINT_HELP = ("which checkpoint of a run folder: last (default: the run's model), best "
                   "(train.best_metric) or a step number kept by train.keep_checkpoints")


def module_record(module: nn.Module | None) -> dict | None:
    """``{"spec": dict}`` for a network built from a spec, else ``{"module": module}``."""
    if module is None:
        return None
    spec = getattr(module, "otmap_spec", None)
    return {"spec": spec} if spec is not None else {"module": module}


def _write_error(path: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"could not write {path} ({type(err).__name__}: {err}); any previous {path.name} is "
        "kept. Free disk space on that filesystem, or choose another folder (for a run: "
        "another run folder, --out / run_dir=)"
    )


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`~otmap.utils.files.atomic_write` (synced to disk): a failed
    write leaves any previous ``path`` as it was and raises :class:`CheckpointError` naming the
    path and the fix."""
    return atomic_write(path, lambda fh: torch.save(obj, fh), sync=True, error=_write_error)


def step_path(folder: str | Path, step: int) -> Path:
    """The numbered checkpoint of ``step`` in a ``checkpoints`` folder."""
    return Path(folder) / f"{_STEP_PREFIX}{step:08d}.pt"


def numbered_checkpoints(folder: str | Path) -> dict[int, Path]:
    """``{step: path}`` of the numbered checkpoints in a ``checkpoints`` folder."""
    out = {}
    for path in Path(folder).glob(f"{_STEP_PREFIX}*.pt"):
        digits = path.stem[len(_STEP_PREFIX):]
        if digits.isdigit():
            out[int(digits)] = path
    return dict(sorted(out.items()))


def keep_numbered(path: str | Path, step: int, keep: int) -> None:
    """Keep ``path`` (a just written ``last.pt``) as the numbered checkpoint of ``step`` (a hard
    link where the filesystem has them, else a copy) and delete all but the last ``keep``."""
    path = Path(path)
    target = step_path(path.parent, step)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(path, tmp)
        except OSError:  # no hard links here (e.g. FAT, some network filesystems)
            shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(target, err) from err
    for old in list(numbered_checkpoints(path.parent).values())[:-keep]:
        old.unlink(missing_ok=True)


def resolve_checkpoint(path: str | Path, checkpoint: str | int = "last") -> Path:
    """A checkpoint file, or a file of a run folder's ``checkpoints/``: ``"last"`` (default),
    ``"best"`` or a step number (kept by ``train.keep_checkpoints``)."""
    path = Path(path)
    which = str(checkpoint)
    if path.is_dir():
        folder = path / "checkpoints"
        if which in ("last", "best"):
            candidate = folder / (CHECKPOINT_NAME if which == "last" else BEST_NAME)
        elif which.isdigit():
            candidate = step_path(folder, int(which))
        else:
            raise CheckpointError(f"checkpoint must be 'last', 'best' or a step number, got "
                                  f"{checkpoint!r}")
        if not candidate.is_file():
            raise CheckpointError(_missing(path, candidate.name))
        return candidate
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if which != "last":
        raise CheckpointError(f"{path} is a checkpoint file: checkpoint={checkpoint!r} picks a "
                              "file in a run folder; pass the run folder instead")
    return path


def _missing(run: Path, name: str) -> str:
    """Why ``run/checkpoints/name`` is not there, and what is."""
    folder = run / "checkpoints"
    present = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
    if name == CHECKPOINT_NAME and not present:
        return (f"{run} is a folder without checkpoints/{CHECKPOINT_NAME}: pass a run folder "
                "written by `otmap train` / otmap.fit(run_dir=...) or a checkpoint file")
    hint = {BEST_NAME: "best.pt is written at the first evaluation (train.eval_every)"}.get(
        name, "numbered checkpoints are kept with train.keep_checkpoints=K")
    return (f"{run} has no checkpoints/{name} ({hint}); it holds: "
            f"{', '.join(present) or 'no checkpoint'}")


def read_checkpoint(path: str | Path, trusted: bool = False,
                    checkpoint: str | int = "last") -> dict:
    """Load and validate a checkpoint (``checkpoint``: see :func:`resolve_checkpoint`);
    :class:`CheckpointError` for corrupt or foreign files."""
    path = resolve_checkpoint(path, checkpoint)
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch raises many types for damaged files
        if not trusted and "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} contains pickled Python objects (a custom network or cost); load it "
                "with otmap.load(path, trusted=True) only if you trust its origin"
            ) from None
        raise CheckpointError(
            f"{path} is corrupted or not an otmap checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an otmap checkpoint (no '{FORMAT}' marker): it was written by "
            "another program; otmap loads files written by result.save or `otmap train`"
        )
    if data.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer otmap (format version {data['version']}); upgrade otmap"
        )
    return data
