"""Paired image-quality metrics (PSNR, SSIM) for images ``[n, c, h, w]`` in ``[-1, 1]``.

Thin wrappers over :mod:`torchmetrics` (imported lazily; ``pip install otmap[images]``) with
shape checks and ``data_range = 2`` for the ``[-1, 1]`` convention.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from otmap.errors import InputError
from otmap.utils.checks import check_positive

__all__ = ["psnr", "psnr_per_image", "ssim"]


def _tm_image() -> ModuleType:
    try:
        import torchmetrics.functional.image as tm_image
    except ImportError as err:
        raise ImportError(
            "image metrics need torchmetrics: install it with `pip install otmap[images]` "
            "(or `pip install torchmetrics>=1.0`)"
        ) from err
    return tm_image


def _check_pair(pred: object, target: object, data_range: float) -> tuple[Tensor, Tensor]:
    for what, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x)
            raise InputError(
                f"{what} must be a tensor of images [n, c, h, w], got {got}: add missing "
                "batch/channel dimensions with x.unsqueeze(...)"
            )
    if pred.shape != target.shape:
        raise InputError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}: pair each prediction with its target"
        )
    if pred.shape[0] == 0:
        raise InputError("pred and target are empty (n = 0): pass at least one image")
    check_positive("data_range", data_range, fix="pass 2.0 for [-1, 1] images")
    return pred.detach().float(), target.detach().to(device=pred.device, dtype=torch.float32)


def psnr_per_image(pred: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """PSNR of each image, ``[n]``: ``10 log10(data_range^2 / MSE_i)`` in dB.

    ``MSE_i`` is the mean over ``(c, h, w)`` of image ``i``; identical images give ``inf``.
    """
    pred, target = _check_pair(pred, target, data_range)
    return _tm_image().peak_signal_noise_ratio(
        pred, target, data_range=float(data_range), reduction="none", dim=(1, 2, 3)
    )


def psnr(pred: Tensor, target: Tensor, data_range: float = 2.0) -> float:
    """Mean over the batch of the per-image PSNR (dB) of :func:`psnr_per_image`.

    torchmetrics' ``dim=(1, 2, 3)``, ``reduction="elementwise_mean"``; this is not the PSNR of
    the batch-wide MSE.
    """
    pred, target = _check_pair(pred, target, data_range)
    value = _tm_image().peak_signal_noise_ratio(
        pred, target, data_range=float(data_range), reduction="elementwise_mean", dim=(1, 2, 3)
    )
    return float(value)


def ssim(pred: Tensor, target: Tensor, data_range: float = 2.0) -> float:
    """Mean SSIM over images (Gaussian window, k1 = 0.01, k2 = 0.03); 1 for identical images.

    The window is the standard ``11 x 11`` with sigma 1.5, shrunk for images under 11 px per side
    to ``k = 2 r + 1``, ``r = min(5, (min(h, w) - 1) // 2)``, with sigma ``0.3 r`` (same
    sigma / width ratio). torchmetrics sizes a Gaussian window from sigma alone
    (``2 int(3.5 sigma + 0.5) + 1``, ignoring ``kernel_size``), so shrinking needs both.
    """
    pred, target = _check_pair(pred, target, data_range)
    side = min(pred.shape[-2:])
    if side < 3:
        raise InputError(
            f"ssim needs images of at least 3x3 px, got {tuple(pred.shape[-2:])}: "
            "use psnr for such tiny images"
        )
    radius = min(5, (side - 1) // 2)
    value = _tm_image().structural_similarity_index_measure(
        pred, target, kernel_size=2 * radius + 1, sigma=0.3 * radius, data_range=float(data_range)
    )
    return float(value)
