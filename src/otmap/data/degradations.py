"""Degradations for unpaired image restoration (denoising, colorisation, inpainting, SR, deblur).

Each degradation is a small picklable callable ``d(x, generator=None) -> y`` on float images
``x [n, c, h, w]`` in ``[-1, 1]``. Random ones draw from torch's global RNG unless a
``torch.Generator`` is passed (its device must match ``x``'s). ``d.config()`` returns the plain
``{"name": ..., **kwargs}`` spec that :func:`build_degradation` turns back into ``d``.
Outputs are not clamped: noise and bicubic/bilinear interpolation may leave ``[-1, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from otmap.data.samplers import to_device_async
from otmap.errors import InputError
from otmap.utils.checks import (
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_real,
)
from otmap.utils.registry import Registry

__all__ = [
    "DEGRADATIONS",
    "Blur",
    "Compose",
    "Degradation",
    "Downsample",
    "GaussianNoise",
    "Grayscale",
    "Mask",
    "build_degradation",
]


def _check_images(x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x)
        raise InputError(
            f"{what} expects float images [n, c, h, w] in [-1, 1], got {got}: convert with "
            "x.float() and add missing batch/channel dimensions with x.unsqueeze(...)"
        )
    return x


#: the degradations by class name, with snake_case aliases
DEGRADATIONS: Registry[Degradation] = Registry("degradation")


class Degradation:
    """Base class: ``__call__(x [n, c, h, w], generator) -> y`` and ``config() -> spec``."""

    name: ClassVar[str]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The ``{"name": ..., **kwargs}`` spec rebuilding this degradation."""
        raise NotImplementedError

    def __repr__(self) -> str:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({kwargs})"


@DEGRADATIONS.register("GaussianNoise", aliases=("gaussian_noise", "noise"))
class GaussianNoise(Degradation):
    """``y = x + sigma * eps``, ``eps ~ N(0, I)``; sigma in [-1, 1] units (OTM denoising: 0.3).

    Not clamped, so ``y`` may leave ``[-1, 1]``.
    """

    name = "GaussianNoise"

    def __init__(self, sigma: float) -> None:
        self.sigma = check_real("GaussianNoise sigma", sigma, at_least=0)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _check_images(x, "GaussianNoise")
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + self.sigma * eps

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sigma": self.sigma}


@DEGRADATIONS.register("Grayscale", aliases=("grayscale",))
class Grayscale(Degradation):
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of RGB ``[n, 3, h, w]``, repeated to 3 channels.

    Applied directly to the ``[-1, 1]`` values (the weights sum to 1, so the range is kept);
    OTM's colorisation source.
    """

    name = "Grayscale"
    weights: ClassVar[tuple[float, float, float]] = (0.299, 0.587, 0.114)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _check_images(x, "Grayscale")
        if x.shape[1] != 3:
            raise InputError(
                f"Grayscale needs RGB images [n, 3, h, w], got {x.shape[1]} channel(s): "
                "it is meant for colour images; drop it for grayscale data"
            )
        w = torch.tensor(self.weights, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True).repeat(1, 3, 1, 1)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


@DEGRADATIONS.register("Mask", aliases=("mask",))
class Mask(Degradation):
    """Set a region of every channel to ``value``.

    kind="right_half": columns ``>= w // 2`` (OTM inpainting, value 0).
    kind="center_box": the centred ``round(box * h) x round(box * w)`` box.
    kind="random_boxes": ``n_boxes`` boxes of that size per image, at uniform random positions
    (overlaps allowed), drawn from ``generator`` or the global RNG.
    """

    name = "Mask"
    kinds: ClassVar[tuple[str, ...]] = ("right_half", "center_box", "random_boxes")

    def __init__(
        self, kind: str = "right_half", value: float = 0.0, box: float = 0.5, n_boxes: int = 3
    ) -> None:
        self.kind = check_choice("Mask kind", kind, self.kinds)
        self.value = check_real("Mask value", value)
        self.box = check_real("Mask box", box, above=0, at_most=1,
                              fix="pass a fraction of the side, e.g. 0.5")
        self.n_boxes = check_positive_int("Mask n_boxes", n_boxes)

    def _box_size(self, h: int, w: int) -> tuple[int, int]:
        return max(1, round(self.box * h)), max(1, round(self.box * w))

    def mask(
        self, shape: Sequence[int], generator: torch.Generator | None = None, device: Any = None
    ) -> Tensor:
        """Boolean ``[n, 1, h, w]`` mask (True = replaced) for images of ``shape [n, c, h, w]``."""
        n, _, h, w = shape
        rows = torch.arange(h, device=device).view(1, 1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, 1, w)
        if self.kind == "right_half":
            return (cols >= w // 2).expand(n, 1, h, w)
        bh, bw = self._box_size(h, w)
        if self.kind == "center_box":
            top = torch.full((n, 1, 1, 1), (h - bh) // 2, device=device)
            left = torch.full((n, 1, 1, 1), (w - bw) // 2, device=device)
        else:
            rng_device = generator.device if generator is not None else "cpu"
            size = (n, self.n_boxes, 1, 1)
            top = torch.randint(0, h - bh + 1, size, generator=generator, device=rng_device)
            left = torch.randint(0, w - bw + 1, size, generator=generator, device=rng_device)
            top, left = to_device_async(top, device), to_device_async(left, device)
        inside = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
        return inside.any(dim=1, keepdim=True)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _check_images(x, "Mask")
        m = self.mask(x.shape, generator=generator, device=x.device)
        return x.masked_fill(m, self.value)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "value": self.value,
            "box": self.box,
            "n_boxes": self.n_boxes,
        }


@DEGRADATIONS.register("Downsample", aliases=("downsample",))
class Downsample(Degradation):
    """Down-sample by ``factor``, add ``N(0, noise^2)``, up-sample back to ``h x w``.

    mode="area" averages ``factor x factor`` blocks; "bilinear"/"bicubic" use antialiased
    interpolation. ``upsample`` is the interpolation back to the input size, or None to return
    the small ``[n, c, h / factor, w / factor]`` image. MNIST super-resolution: factor=2,
    noise=0.2, upsample="nearest" (32 -> 16 + noise -> 32). ``h`` and ``w`` must be divisible
    by ``factor``.
    """

    name = "Downsample"
    modes: ClassVar[tuple[str, ...]] = ("area", "bilinear", "bicubic")
    upsamples: ClassVar[tuple[str | None, ...]] = ("nearest", "bilinear", "bicubic", None)

    def __init__(
        self,
        factor: int = 2,
        noise: float = 0.0,
        mode: str = "area",
        upsample: str | None = "nearest",
    ) -> None:
        self.factor = check_int("Downsample factor", factor, 2, fix="pass e.g. 2 or 4")
        self.noise = check_real("Downsample noise", noise, at_least=0)
        self.mode = check_choice("Downsample mode", mode, self.modes)
        self.upsample = check_choice("Downsample upsample", upsample, self.upsamples)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _check_images(x, "Downsample")
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise InputError(
                f"Downsample factor {self.factor} must divide the image size {h}x{w}: "
                "resize or crop the images first, or pick another factor"
            )
        small_size = (h // self.factor, w // self.factor)
        if self.mode == "area":
            y = F.avg_pool2d(x, self.factor)
        else:
            y = F.interpolate(
                x, size=small_size, mode=self.mode, align_corners=False, antialias=True
            )
        if self.noise > 0:
            y = y + self.noise * torch.randn(
                y.shape, generator=generator, dtype=y.dtype, device=y.device
            )
        if self.upsample is None:
            return y
        if self.upsample == "nearest":
            return F.interpolate(y, size=(h, w), mode="nearest")
        return F.interpolate(y, size=(h, w), mode=self.upsample, align_corners=False)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "factor": self.factor,
            "noise": self.noise,
            "mode": self.mode,
            "upsample": self.upsample,
        }


@DEGRADATIONS.register("Blur", aliases=("blur",))
class Blur(Degradation):
    """Separable Gaussian blur, kernel ``g_t ∝ exp(-t^2 / (2 sigma^2))`` for ``|t| <= k // 2``.

    The kernel sums to 1; ``kernel_size`` (odd) defaults to ``2 ceil(3 sigma) + 1``. Borders use
    reflect padding, which needs ``k // 2 < h`` and ``< w``.
    """

    name = "Blur"

    def __init__(self, sigma: float = 1.0, kernel_size: int | None = None) -> None:
        self.sigma = check_positive("Blur sigma", sigma, fix="drop the blur for an identity")
        if kernel_size is not None:
            kernel_size = check_positive_int("Blur kernel_size", kernel_size)
            if kernel_size % 2 == 0:
                raise InputError(f"Blur kernel_size must be odd, got {kernel_size}: pass "
                                 f"{kernel_size - 1} or {kernel_size + 1}")
        self.kernel_size = kernel_size

    def kernel(self, dtype: torch.dtype = torch.float32, device: Any = None) -> Tensor:
        """The normalised 1-D Gaussian kernel ``[k]``."""
        k = self.kernel_size or 2 * math.ceil(3 * self.sigma) + 1
        t = torch.arange(k, dtype=torch.float64) - k // 2
        g = torch.exp(-(t**2) / (2 * self.sigma**2))
        return (g / g.sum()).to(dtype=dtype, device=device)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _check_images(x, "Blur")
        c, h, w = x.shape[1:]
        g = self.kernel(x.dtype, x.device)
        p = g.numel() // 2
        if p >= h or p >= w:
            raise InputError(
                f"Blur kernel of size {g.numel()} is too large for {h}x{w} images (reflect padding "
                "needs kernel_size // 2 < side): pass a smaller sigma or kernel_size"
            )
        y = F.pad(x, (p, p, p, p), mode="reflect")
        y = F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        return F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sigma": self.sigma, "kernel_size": self.kernel_size}


@DEGRADATIONS.register("Compose", aliases=("compose",))
class Compose(Degradation):
    """Apply ``steps`` in order: ``y = d_k(... d_1(x))``; steps are degradations or specs."""

    name = "Compose"

    def __init__(self, steps: Sequence[Degradation | dict | str]) -> None:
        if isinstance(steps, (str, dict, Degradation)) or not isinstance(steps, Sequence):
            raise InputError(
                f"Compose steps must be a list of degradations or specs, got {type(steps)}: "
                "wrap a single step in a list"
            )
        self.steps = [s if isinstance(s, Degradation) else build_degradation(s) for s in steps]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for step in self.steps:
            x = step(x, generator=generator)
        return x

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [s.config() for s in self.steps]}


def build_degradation(spec: dict | str) -> Degradation:
    """The degradation ``spec["name"]`` built with the rest of ``spec`` as its kwargs; a bare
    string is a spec without kwargs.

    Names are the class names (``"GaussianNoise"``) or snake_case aliases (``"gaussian_noise"``).
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise InputError(
            f"a degradation spec must be a dict {{'name': ..., **kwargs}} or a name, got {spec!r}"
        )
    return DEGRADATIONS.build(spec)
