"""Data from config specs, as recipes write them.

* ``{"toy": "moons", **params}``: a built-in toy distribution (:func:`otmap.data.toy`);
  ``project: unit_circle`` pushes its samples to ``x / |x|`` (the un-projection toy's source);
* ``{"file": "samples.npy"}``: samples ``[n, *shape]`` from a ``.npy``, ``.pt`` or ``.csv`` file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from otmap.data.samplers import Sampler, TensorSampler
from otmap.data.toy import toy
from otmap.errors import InputError

_FILE_TYPES = (".npy", ".pt", ".csv")


def load_samples(path: str | Path) -> torch.Tensor:
    """Samples from a ``.npy`` / ``.pt`` (a tensor) / ``.csv`` (numbers, comma separated) file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file {path} does not exist")
    if path.suffix == ".npy":
        data = np.load(path, allow_pickle=False)
    elif path.suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, torch.Tensor):
            raise InputError(f"{path} must hold one tensor [n, *shape], got {type(data).__name__}")
    elif path.suffix == ".csv":
        data = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)
    else:
        raise InputError(f"unsupported data file {path.name}: use one of {_FILE_TYPES}")
    return torch.as_tensor(data)


class UnitSphereProjection:
    """Samples of ``base`` projected on the unit sphere: ``x / |x|`` (``[n, d]``)."""

    def __init__(self, base: Sampler) -> None:
        self.base = base

    def sample(self, n: int) -> torch.Tensor:
        x = self.base.sample(n)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def sampler_from_spec(spec: dict | str, role: str) -> Sampler:
    """A sampler from a data spec (see module docstring); ``role`` names it in errors."""
    if isinstance(spec, str):
        spec = {"toy": spec}
    if not isinstance(spec, dict):
        raise InputError(f"{role}: a data spec is a mapping like {{toy: moons}}, got {spec!r}")
    params = dict(spec)
    if "toy" in params:
        project = params.pop("project", None)
        sampler = toy(params.pop("toy"), **params)
        if project is None:
            return sampler
        if project != "unit_circle":
            raise InputError(f"{role}: unknown projection {project!r}; the one known is "
                             "'unit_circle'")
        return UnitSphereProjection(sampler)
    if "file" in params:
        extra = sorted(set(params) - {"file"})
        if extra:
            raise InputError(f"{role}: file specs take no other keys, got {extra}")
        return TensorSampler(load_samples(params["file"]), name=role)
    raise InputError(f"{role}: a data spec needs 'toy' or 'file', got keys {sorted(params)}")
