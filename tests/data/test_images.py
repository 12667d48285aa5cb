"""Image loaders on small fixture files written in the real formats (IDX, CIFAR pickles, PNGs)."""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from otmap.data.images import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageFolderDataset,
    class_index,
    filter_classes,
    image_sampler,
    load_cifar10,
    load_digits,
    load_idx,
    load_image_folder,
    load_mnist,
    split_indices,
)
from otmap.data.samplers import DatasetSampler, TensorSampler
from otmap.data.specs import sampler_from_spec
from otmap.errors import InputError

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

# --------------------------------------------------------------------------------------------
# fixtures in the real file formats


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, payload: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def _mnist_arrays(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = np.arange(n, dtype=np.uint8) % 10
    return images, labels


def _write_mnist(folder: Path, prefix: str, n: int, gz: bool, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = _mnist_arrays(n, seed)
    _write(folder / f"{prefix}-images-idx3-ubyte", _idx_bytes(images, 2051), gz)
    _write(folder / f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels, 2049), gz)
    return images, labels


def _write_cifar(folder: Path, n_per_batch: int = 2, n_test: int = 3) -> dict[str, list]:
    """5 train batches + a test batch; image 0 of every batch has R=255, G=0, B=128 planes with
    G[2, 5] = 200 marking the row-major layout."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written: dict[str, list] = {"train": [], "test": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        n = n_test if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        planes = np.stack([np.full((32, 32), v, np.uint8) for v in (255, 0, 128)])
        planes[1, 2, 5] = 200
        data[0] = planes.reshape(-1)
        labels = [(b + i) % 10 for i in range(n)]
        with (folder / name).open("wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, fh)
        written["test" if name == "test_batch" else "train"].append((data, labels))
    return written


def _png(path: Path, width: int, height: int, color=(255, 0, 0), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height), color).save(path)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    _png(root / "a_red.png", 37, 23, (255, 0, 0))
    _png(root / "sub" / "b_blue.png", 64, 80, (0, 0, 255))
    _png(root / "c_gray.png", 40, 40, 128, mode="L")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (root / "notes.txt").write_text("not an image")
    return root


# --------------------------------------------------------------------------------------------
# IDX / MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_round_trip_and_scaling(tmp_path, gz):
    images, labels = _write_mnist(tmp_path, "train", 10, gz)
    suffix = ".gz" if gz else ""
    x, y = load_idx(
        tmp_path / f"train-images-idx3-ubyte{suffix}", tmp_path / f"train-labels-idx1-ubyte{suffix}"
    )
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
    expected = torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 127.5 - 1
    torch.testing.assert_close(x, expected)
    assert x[0, 0, 0, 0].item() == -1.0 and x[0, 0, 0, 1].item() == 1.0
    assert x.min() >= -1 and x.max() <= 1
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    x_only, none = load_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert none is None and torch.equal(x_only, x)


def test_load_idx_errors_name_the_file(tmp_path):
    images, labels = _mnist_arrays(4)
    bad = tmp_path / "bad-images"
    bad.write_bytes(_idx_bytes(images, 2052))
    with pytest.raises(InputError, match="bad-images.*magic number 2052.*expected 2051"):
        load_idx(bad)
    swapped = tmp_path / "labels-as-images"
    swapped.write_bytes(_idx_bytes(labels, 2049))
    with pytest.raises(InputError, match="labels-as-images.*swapped"):
        load_idx(swapped)
    truncated = tmp_path / "short-images"
    truncated.write_bytes(_idx_bytes(images, 2051)[:-7])
    with pytest.raises(InputError, match="short-images.*truncated"):
        load_idx(truncated)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(_idx_bytes(images, 2051))[:30])
    with pytest.raises(InputError, match="broken.gz"):
        load_idx(broken_gz)
    good = _write(tmp_path / "good-images", _idx_bytes(images, 2051), gz=False)
    few = _write(tmp_path / "few-labels", _idx_bytes(labels[:3], 2049), gz=False)
    with pytest.raises(InputError, match="few-labels.*3 labels.*4 images"):
        load_idx(good, few)


def test_load_mnist_splits_sizes_and_channels(tmp_path):
    train_images, train_labels = _write_mnist(tmp_path, "train", 10, gz=True, seed=1)
    test_images, _ = _write_mnist(tmp_path, "t10k", 6, gz=False, seed=2)
    x, y = load_mnist(tmp_path)
    assert x.shape == (10, 1, 28, 28) and y.tolist() == train_labels.tolist()
    torch.testing.assert_close(x[:, 0], torch.from_numpy(train_images).float() / 127.5 - 1)
    xt, yt = load_mnist(tmp_path, split="test")
    assert xt.shape == (6, 1, 28, 28) and yt.shape == (6,)
    x32, _ = load_mnist(tmp_path, size=32, channels=3)
    assert x32.shape == (10, 3, 32, 32) and x32.dtype == torch.float32
    assert x32.min() >= -1 and x32.max() <= 1
    assert torch.equal(x32[:, 0], x32[:, 1]) and torch.equal(x32[:, 0], x32[:, 2])
    # bilinear resize of a constant image stays constant
    const = tmp_path / "const"
    const.mkdir()
    ones = np.full((2, 28, 28), 255, np.uint8)
    _write(const / "train-images-idx3-ubyte", _idx_bytes(ones, 2051), gz=False)
    _write(const / "train-labels-idx1-ubyte", _idx_bytes(np.array([3, 4]), 2049), gz=False)
    c32, _ = load_mnist(const, size=32, dataset="fashion_mnist")
    assert torch.all(c32 == 1.0)


def test_load_mnist_torchvision_layout(tmp_path):
    _write_mnist(tmp_path / "FashionMNIST" / "raw", "t10k", 5, gz=False)
    x, y = load_mnist(tmp_path, split="test", dataset="fashion_mnist")
    assert x.shape == (5, 1, 28, 28) and y.shape == (5,)


def test_load_mnist_missing_names_paths_and_source(tmp_path):
    with pytest.raises(InputError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "train-images-idx3-ubyte") in msg
    assert str(tmp_path / "train-labels-idx1-ubyte") in msg
    assert "yann.lecun.com" in msg and f"into {tmp_path}" in msg
    with pytest.raises(InputError) as info:
        load_mnist(tmp_path / "nowhere", split="test", dataset="fashion_mnist")
    msg = str(info.value)
    assert str(tmp_path / "nowhere" / "t10k-images-idx3-ubyte") in msg
    assert "zalandoresearch" in msg and "does not exist" in msg
    with pytest.raises(InputError, match="split"):
        load_mnist(tmp_path, split="val")
    with pytest.raises(InputError, match="dataset"):
        load_mnist(tmp_path, dataset="kmnist")


# --------------------------------------------------------------------------------------------
# CIFAR-10


def test_load_cifar10_shapes_layout_and_labels(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        x, y = load_cifar10(root)
        assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        assert y.tolist() == [lab for _, labels in written["train"] for lab in labels]
    xt, yt = load_cifar10(tmp_path, split="test")
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == written["test"][0][1]
    # image 0 of batch 2 (row 2 overall): R plane first, then G, then B, row-major
    img = x[2]
    assert torch.all(img[0] == 1.0)
    assert img[1, 2, 5].item() == pytest.approx(200 / 127.5 - 1)
    green = img[1].clone()
    green[2, 5] = -1.0
    assert torch.all(green == -1.0)
    assert torch.allclose(img[2], torch.full((32, 32), 128 / 127.5 - 1), atol=1e-6)
    raw0 = written["train"][0][0][1]  # second image of batch 1, random pixels
    torch.testing.assert_close(x[1].reshape(-1), torch.from_numpy(raw0).float() / 127.5 - 1)


def test_load_cifar10_missing_and_corrupt(tmp_path):
    with pytest.raises(InputError) as info:
        load_cifar10(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in msg
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_5") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg
    with pytest.raises(InputError, match="test_batch"):
        load_cifar10(tmp_path, split="test")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(InputError, match="tar -xzf"):
        load_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"garbage, not a pickle")
    with pytest.raises(InputError, match="data_batch_3.*cannot be unpickled"):
        load_cifar10(tmp_path)
    with (folder / "data_batch_3").open("wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(InputError, match="data_batch_3.*3072"):
        load_cifar10(tmp_path)


# --------------------------------------------------------------------------------------------
# image folders


def test_load_image_folder_skips_corrupt_with_one_warning(image_folder):
    with pytest.warns(UserWarning, match="bad.png") as record:
        x = load_image_folder(image_folder, size=16)
    assert len([w for w in record if "skipped" in str(w.message)]) == 1
    assert "1 unreadable" in str(record[0].message)
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    # sorted relative paths: a_red.png, c_gray.png, sub/b_blue.png; constant colors survive
    assert torch.all(x[0, 0] == 1) and torch.all(x[0, 1:] == -1)
    assert torch.allclose(x[1], torch.full((3, 16, 16), 128 / 127.5 - 1), atol=1e-6)
    assert torch.all(x[2, 2] == 1) and torch.all(x[2, :2] == -1)
    gray = load_image_folder(image_folder, size=8, channels=1, max_images=1)  # a_red.png only
    red_luma = (255 * 299 + 500) // 1000  # Pillow's ITU-R 601-2 L = R * 299/1000
    assert gray.shape == (1, 1, 8, 8)
    assert torch.allclose(gray, torch.full_like(gray, red_luma / 127.5 - 1), atol=1e-6)


def test_load_image_folder_raise_names_the_file(image_folder):
    with pytest.raises(InputError, match="bad.png"):
        load_image_folder(image_folder, size=16, on_error="raise")
    with pytest.raises(InputError, match="on_error"):
        load_image_folder(image_folder, size=16, on_error="ignore")


def test_load_image_folder_center_crop(tmp_path):
    img = np.zeros((80, 64, 3), np.uint8)  # 64 wide, 80 tall; white 20x20 center
    top, left = int(round((80 - 20) / 2)), int(round((64 - 20) / 2))
    img[top:top + 20, left:left + 20] = 255
    Image.fromarray(img).save(tmp_path / "x.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = load_image_folder(tmp_path, size=10, center_crop=20)
    assert x.shape == (1, 3, 10, 10) and torch.all(x == 1)
    with pytest.raises(InputError, match="smaller than center_crop"):
        load_image_folder(tmp_path, size=10, center_crop=100, on_error="raise")
    with pytest.raises(InputError, match="none of the 1 image files"):
        load_image_folder(tmp_path, size=10, center_crop=100)


def test_load_image_folder_empty_or_missing(tmp_path):
    (tmp_path / "only.txt").write_text("x")
    with pytest.raises(InputError) as info:
        load_image_folder(tmp_path, size=8)
    assert str(tmp_path) in str(info.value) and ".png" in str(info.value)
    assert ".webp" in str(info.value)
    with pytest.raises(InputError, match="does not exist"):
        load_image_folder(tmp_path / "missing", size=8)


# --------------------------------------------------------------------------------------------
# digits


def test_load_digits_sizes_range_and_labels():
    from sklearn.datasets import load_digits as sk_digits

    x8, y = load_digits()
    assert x8.shape == (1797, 1, 8, 8) and x8.dtype == torch.float32
    torch.testing.assert_close(
        x8[:, 0], torch.from_numpy(sk_digits().images).float() / 8 - 1
    )
    assert x8.min().item() == -1.0 and x8.max().item() == 1.0
    assert y.dtype == torch.int64 and sorted(set(y.tolist())) == list(range(10))
    for size in (16, 32):
        xs, ys = load_digits(size=size, channels=3)
        assert xs.shape == (1797, 3, size, size)
        assert xs.min() >= -1 and xs.max() <= 1 and torch.equal(ys, y)
        assert torch.equal(xs[:, 0], xs[:, 2])
    with pytest.raises(InputError, match="size"):
        load_digits(size=4)
    with pytest.raises(InputError, match="channels"):
        load_digits(channels=2)


# --------------------------------------------------------------------------------------------
# classes, splits, samplers


def test_filter_classes():
    images = torch.arange(8, dtype=torch.float32).reshape(8, 1)
    labels = torch.tensor([0, 1, 2, 1, 3, 0, 1, 2])
    kept = filter_classes(images, labels, [1, 3])
    assert kept.flatten().tolist() == [1.0, 3.0, 4.0, 6.0]
    assert filter_classes(images, labels, [class_index("mnist", "2")]).shape == (2, 1)
    with pytest.raises(InputError, match=r"\[7\].*present are \[0, 1, 2, 3\]"):
        filter_classes(images, labels, [1, 7])
    with pytest.raises(InputError, match="labels"):
        filter_classes(images, labels[:5], [1])


def test_split_indices_disjoint_reproducible_and_rng_free():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    parts = split_indices(101, (0.45, 0.45, 0.1), seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert [len(p) for p in parts] == [45, 45, 11]
    joined = torch.cat(parts)
    assert joined.dtype == torch.int64 and sorted(joined.tolist()) == list(range(101))
    torch.manual_seed(999)
    again = split_indices(101, (0.45, 0.45, 0.1), seed=3)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    other = split_indices(101, (0.45, 0.45, 0.1), seed=4)
    assert not torch.equal(parts[0], other[0])
    partial = split_indices(10, (0.3, 0.2))
    assert [len(p) for p in partial] == [3, 2] and len(set(torch.cat(partial).tolist())) == 5
    with pytest.raises(InputError, match="at most 1"):
        split_indices(10, (0.6, 0.5))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        split_indices(10, (-0.1, 0.5))


def test_class_names_and_index():
    assert len(CIFAR10_CLASSES) == 10 and len(FASHION_MNIST_CLASSES) == 10
    assert class_index("cifar10", "bird") == 2
    assert class_index("CIFAR-10", "Truck") == 9
    assert class_index("fashion_mnist", "T-shirt/top") == 0
    assert class_index("fashion-mnist", "ankle boot") == 9
    assert class_index("cifar10", 4) == 4
    with pytest.raises(InputError, match="out of range"):
        class_index("cifar10", 10)
    with pytest.raises(InputError, match="Did you mean 'bird'"):
        class_index("cifar10", "birds")
    with pytest.raises(InputError, match="unknown dataset"):
        class_index("imagenet", "cat")


def test_image_sampler():
    x = torch.rand(5, 3, 4, 4) * 2 - 1
    sampler = image_sampler(x)
    assert isinstance(sampler, TensorSampler) and sampler.shape == (3, 4, 4)
    assert sampler.sample(7).shape == (7, 3, 4, 4)


# --------------------------------------------------------------------------------------------
# lazily read folders, threaded dataset sampling


def _noise_folder(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
            root / f"{i:02d}.png")
    return root


def test_lazy_folder_dataset_reads_what_the_loader_reads(tmp_path):
    root = _noise_folder(tmp_path)
    dataset = ImageFolderDataset(root, size=8)
    loaded = load_image_folder(root, size=8, workers=3)
    assert len(dataset) == len(loaded) == 12
    torch.testing.assert_close(torch.stack([dataset[i] for i in range(12)]), loaded)
    (root / "zz_bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="zz_bad.png"):
        ImageFolderDataset(root, size=8)[12]


def test_threaded_dataset_sampler_draws_the_same_batches(tmp_path):
    dataset = ImageFolderDataset(_noise_folder(tmp_path), size=8)
    batches = []
    for workers in (0, 3):
        torch.manual_seed(4)
        batches.append(DatasetSampler(dataset, workers=workers).sample(7))
    torch.testing.assert_close(batches[0], batches[1])
    with pytest.raises(InputError, match="workers"):
        DatasetSampler(dataset, workers=-1)


def test_lazy_folder_spec_parts_match_the_in_memory_parts(tmp_path):
    root = _noise_folder(tmp_path)
    spec = {"dataset": "folder", "root": str(root), "size": 8, "part": [0.0, 0.5]}
    lazy = sampler_from_spec({**spec, "lazy": True, "workers": 2}, "target")
    memory = sampler_from_spec(spec, "target")
    assert len(lazy) == len(memory) == 6
    torch.manual_seed(1)
    a = lazy.sample(5)
    torch.manual_seed(1)
    torch.testing.assert_close(a, memory.sample(5))
    with pytest.raises(InputError, match="lazy loading reads image folders"):
        sampler_from_spec({"dataset": "digits", "lazy": True}, "source")
