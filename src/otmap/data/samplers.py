"""Samplers: objects that draw batches ``[n, *shape]`` from a distribution.

All randomness comes from torch's global RNG unless a ``torch.Generator`` is passed
explicitly, so saving/restoring ``torch.get_rng_state()`` makes training exactly resumable.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from otmap.errors import InputError
from otmap.utils.checks import check_int, check_positive_int

__all__ = [
    "Sampler",
    "TensorSampler",
    "CallableSampler",
    "DatasetSampler",
    "check_samples",
    "as_sampler",
    "sample_shape",
    "on_device",
]

_MAX_REPORTED_ROWS = 5


@runtime_checkable
class Sampler(Protocol):
    """Anything with ``sample(n) -> Tensor [n, *shape]``."""

    def sample(self, n: int) -> Tensor:
        """Draw ``n`` samples, shape ``[n, *shape]``."""
        ...


def _check_count(n: Any) -> int:
    """Return ``n`` as an int if it is a positive integer, else raise InputError."""
    return check_positive_int("n", n, fix="pass the number of samples to draw, e.g. sample(256)")


def _to_float_tensor(x: Any, name: str) -> Tensor:
    """Convert a tensor/array to a float32 tensor; reject other types and non-float dtypes."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "iubc":
            raise InputError(
                f"{name} has dtype {x.dtype}; expected floating point: convert with "
                "x.astype(np.float32) (or torch.as_tensor(x).float())"
            )
        if x.dtype.kind != "f":
            raise InputError(
                f"{name} has non-numeric dtype {x.dtype}: build a float array, "
                "e.g. np.asarray(x, dtype=np.float32)"
            )
        arr = np.ascontiguousarray(x, dtype=np.float32)
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if not isinstance(x, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor or numpy array of shape [n, d] or [n, c, h, w], "
            f"got {type(x).__name__}: convert with torch.as_tensor(x, dtype=torch.float32)"
        )
    if not x.is_floating_point():
        hint = " (for complex data take x.real or x.abs() first)" if x.is_complex() else ""
        raise InputError(
            f"{name} has dtype {x.dtype}; expected floating point: convert with x.float(){hint}"
        )
    return x.float()


def _validate(x: Any, name: str, min_samples: int) -> Tensor:
    """Shared checks of one batch: type, dtype, shape, sample count and finiteness."""
    x = _to_float_tensor(x, name)
    shape = tuple(x.shape)
    if x.ndim < 2:
        raise InputError(
            f"{name} has shape {shape}: samples must be [n, d] (or [n, c, h, w]); "
            "for 1-D data use x[:, None]"
        )
    if 0 in shape[1:]:
        raise InputError(
            f"{name} has shape {shape} with an empty feature dimension: each sample needs "
            "at least one value; check how the array was sliced"
        )
    if shape[0] < min_samples:
        raise InputError(
            f"{name} has {shape[0]} sample(s) (shape {shape}); at least {min_samples} are "
            "needed: pass more rows along the first dimension"
        )
    bad = ~torch.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad:
        rows = bad.reshape(shape[0], -1).any(dim=1).nonzero().flatten().tolist()
        shown = str(rows[:_MAX_REPORTED_ROWS])
        if len(rows) > _MAX_REPORTED_ROWS:
            shown = shown[:-1] + f", ... ({len(rows)} rows in all)]"
        raise InputError(
            f"{name} contains {n_bad} NaN/Inf values in rows {shown}: "
            "drop or impute them before fitting"
        )
    return x


def check_samples(x: Any, name: str) -> Tensor:
    """Validate one batch ``[n, *shape]`` (n >= 2) and return it as a float32 tensor.

    Numpy arrays are converted; float64/float16 are cast to float32. Integer, bool and
    complex dtypes, 0-/1-D inputs, fewer than 2 samples and NaN/Inf raise InputError.
    """
    return _validate(x, name, min_samples=2)


def to_device_async(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device``; a CPU tensor bound for a GPU goes through pinned memory without
    blocking the host (a pageable copy would synchronise the stream)."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _index_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


class TensorSampler:
    """Draws rows of a fixed tensor ``data [N, *shape]`` uniformly with replacement."""

    def __init__(self, data: Any, name: str = "data") -> None:
        self.data: Tensor = check_samples(data, name)
        self.shape: tuple[int, ...] = tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return f"TensorSampler(N={len(self)}, shape={self.shape})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Return ``[n, *shape]`` rows drawn uniformly at random with replacement."""
        n = _check_count(n)
        idx = torch.randint(len(self), (n,), generator=generator, device=_index_device(generator))
        return self.data[to_device_async(idx, self.data.device)]


class CallableSampler:
    """Wraps a callable ``fn(n) -> Tensor [n, *shape]`` and validates every batch."""

    def __init__(self, fn: Callable[[int], Any], name: str = "samples") -> None:
        if not callable(fn):
            raise InputError(
                f"{name}: CallableSampler needs a callable n -> Tensor [n, *shape], got "
                f"{type(fn).__name__}: pass a function such as lambda n: torch.randn(n, 2)"
            )
        self.fn = fn
        self.name = name

    def __repr__(self) -> str:
        return f"CallableSampler({self.fn!r})"

    def sample(self, n: int) -> Tensor:
        """Call ``fn(n)`` and check the result is a finite float batch ``[n, *shape]``."""
        n = _check_count(n)
        x = _validate(self.fn(n), f"{self.name} (output of {self.fn!r})", min_samples=1)
        if x.shape[0] != n:
            raise InputError(
                f"{self.name}: the callable returned {x.shape[0]} samples (shape "
                f"{tuple(x.shape)}) for n={n}: it must return exactly n samples [n, *shape]"
            )
        return x


def _item_tensor(item: Any, name: str) -> Tensor:
    """Extract the sample tensor from a dataset item (a Tensor or a tuple ``(Tensor, ...)``)."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, Tensor):
        raise InputError(
            f"{name}: dataset items must be a Tensor or a tuple whose first element is a "
            f"Tensor, got {type(item).__name__}: add a transform that returns tensors "
            "(e.g. torchvision.transforms.ToTensor())"
        )
    return item


class DatasetSampler:
    """Draws random items of a map-style torch ``Dataset`` and stacks them: ``[n, *shape]``.

    Items may be a Tensor or a tuple whose first element is a Tensor (labels are dropped).
    With ``workers > 0`` a batch's items are read by that many threads (file-backed sets:
    Pillow and file reads release the GIL); the indices still come from torch's global RNG, so
    runs stay exactly resumable.
    """

    def __init__(self, dataset: Dataset, name: str = "dataset", workers: int = 0) -> None:
        self.workers = check_int(f"{name}: workers", workers)
        self._pool: ThreadPoolExecutor | None = None
        try:
            size = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            raise InputError(
                f"{name}: {type(dataset).__name__} has no __len__; DatasetSampler needs a "
                "map-style Dataset with __len__ and __getitem__: wrap iterable data in a "
                "callable n -> Tensor instead"
            ) from None
        if size < 1:
            raise InputError(f"{name} is empty: pass a dataset with at least one item")
        self.dataset = dataset
        self.name = name
        self.shape: tuple[int, ...] = tuple(_item_tensor(dataset[0], name).shape)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}  # threads are not copied: a copy starts its own

    def __repr__(self) -> str:
        return f"DatasetSampler({type(self.dataset).__name__}, N={len(self)}, shape={self.shape})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Return ``[n, *shape]`` items drawn uniformly at random with replacement."""
        n = _check_count(n)
        idx = torch.randint(len(self), (n,), generator=generator, device=_index_device(generator))
        if self.workers and self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="otmap-data")
        read = self.dataset.__getitem__
        raw = self._pool.map(read, idx.tolist()) if self._pool else map(read, idx.tolist())
        items = [_item_tensor(item, self.name) for item in raw]
        shapes = {tuple(t.shape) for t in items}
        if len(shapes) > 1:
            raise InputError(
                f"{self.name}: items have different shapes {sorted(shapes)}: resize or crop "
                "them to one shape in the dataset transform"
            )
        return _validate(torch.stack(items), self.name, min_samples=1)


def as_sampler(obj: Any, name: str = "samples") -> Sampler:
    """Turn data into a Sampler.

    Tensor/ndarray ``[N, *shape]`` -> TensorSampler; an object with a callable ``.sample``
    -> returned as is; a map-style torch Dataset -> DatasetSampler; any other callable
    ``n -> Tensor`` -> CallableSampler.
    """
    if isinstance(obj, (Tensor, np.ndarray)):
        return TensorSampler(obj, name=name)
    if callable(getattr(obj, "sample", None)):
        return obj
    if isinstance(obj, IterableDataset):
        raise InputError(
            f"{name} is an IterableDataset, which cannot be sampled at random: wrap it in a "
            "callable n -> Tensor [n, *shape] or pass a map-style Dataset"
        )
    if isinstance(obj, Dataset):
        return DatasetSampler(obj, name=name)
    if callable(obj):
        return CallableSampler(obj, name=name)
    raise InputError(
        f"{name} must be a torch.Tensor or numpy array [N, *shape], an object with "
        ".sample(n), a map-style torch Dataset, or a callable n -> Tensor; got "
        f"{type(obj).__name__}: convert it, e.g. torch.as_tensor(x, dtype=torch.float32)"
    )


def on_device(sampler: Sampler, device: torch.device, max_bytes: int = 2**31) -> Sampler:
    """A copy of ``sampler`` whose in-memory data set (a :class:`TensorSampler`, possibly
    wrapped by samplers with a ``.base``) lives on ``device`` when it takes at most
    ``max_bytes``: batches are then gathered there, without a host-to-device copy per step.
    The caller's sampler is left as it was."""
    base = getattr(sampler, "base", None)
    if isinstance(sampler, TensorSampler) and sampler.data.nbytes <= max_bytes:
        moved = copy.copy(sampler)
        moved.data = sampler.data.to(device)
        return moved
    if base is None:
        return sampler
    wrapper = copy.copy(sampler)
    wrapper.base = on_device(base, device, max_bytes)
    return wrapper


def sample_shape(sampler: Sampler) -> tuple[int, ...]:
    """Per-sample shape, e.g. ``(d,)`` or ``(c, h, w)``.

    Read from ``sampler.shape`` when present, else found by drawing 2 samples (which
    advances torch's global RNG).
    """
    shape = getattr(sampler, "shape", None)
    if shape is not None:
        return tuple(int(s) for s in shape)
    x = _validate(sampler.sample(2), f"{type(sampler).__name__}.sample(2)", min_samples=2)
    return tuple(x.shape[1:])
