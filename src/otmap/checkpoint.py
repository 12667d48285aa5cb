"""Checkpoint files: one dict written atomically with ``torch.save``.

Layout::

    {"format": "otmap-checkpoint", "version": 1, "otmap_version": ...,
     "model": {"map": spec-or-module, "embedding": spec-or-module, "cost": dict,
               "source_shape": [...], "target_shape": [...],
               "map_state": state_dict (the map used for evaluation: EMA when present),
               "noise": dict | None},
     "training": NeuralOT.training_state() | None,
     "rng": {"torch": ByteTensor, "cuda": [...]} | None,
     "config": dict}

Networks built from a spec (:func:`otmap.nets.build_net`) are stored as their spec and rebuilt
on load; other modules are pickled whole, and loading those needs ``trusted=True``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from otmap.errors import CheckpointError

FORMAT = "otmap-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "last.pt"


def module_record(module: nn.Module | None) -> dict | None:
    """``{"spec": dict}`` for a network built from a spec, else ``{"module": module}``."""
    if module is None:
        return None
    spec = getattr(module, "otmap_spec", None)
    return {"spec": spec} if spec is not None else {"module": module}


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's ``checkpoints/last.pt``."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / CHECKPOINT_NAME
        if not candidate.is_file():
            raise CheckpointError(
                f"{path} is a folder without checkpoints/{CHECKPOINT_NAME}: pass a run folder "
                "written by `otmap train` / otmap.fit(run_dir=...) or a checkpoint file"
            )
        return candidate
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def read_checkpoint(path: str | Path, trusted: bool = False) -> dict:
    """Load and validate a checkpoint; :class:`CheckpointError` for corrupt or foreign files."""
    path = resolve_checkpoint(path)
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
