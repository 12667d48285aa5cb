"""Fixed embeddings Q for unequal dimensions (OTM): the cost compares ``Q(x)`` with ``T(x)``.

All are parameter-free or hold fixed (non-trainable) buffers, so a checkpoint rebuilds them
from their spec (:func:`build_embedding`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otmap.errors import InputError
from otmap.utils.registry import Registry

#: the embeddings by class name
EMBEDDINGS: Registry[nn.Module] = Registry("embedding")


@EMBEDDINGS.register("Reshape")
class Reshape(nn.Module):
    """``[n, d] -> [n, *shape]`` (e.g. 192-d noise as a 3 x 8 x 8 image)."""

    def __init__(self, shape: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: Tensor) -> Tensor:
        if math.prod(x.shape[1:]) != math.prod(self.shape):
            raise InputError(f"cannot reshape inputs {tuple(x.shape[1:])} to {self.shape}")
        return x.reshape(x.shape[0], *self.shape)


@EMBEDDINGS.register("Upsample")
class Upsample(nn.Module):
    """OTM's Q: reshape vectors to ``shape`` (c, h, w) if needed, then interpolate to ``size``
    (bicubic by default, as in the paper: 3x8x8 noise -> 3x32x32 or 3x64x64)."""

    def __init__(self, size: int | tuple[int, int], shape: tuple[int, ...] | None = None,
                 mode: str = "bicubic") -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.reshape = Reshape(shape) if shape is not None else None
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if self.reshape is not None:
            x = self.reshape(x)
        if x.dim() != 4:
            raise InputError(f"Upsample needs images [n, c, h, w] (or pass shape=...), got "
                             f"{tuple(x.shape)}")
        align = False if self.mode in ("bilinear", "bicubic") else None
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=align)


@EMBEDDINGS.register("LinearProjection")
class LinearProjection(nn.Module):
    """A fixed random linear map ``[n, d_in] -> [n, d_out]`` with orthonormal rows or columns
    (seeded; it preserves lengths when it embeds into a larger space)."""

    def __init__(self, in_features: int, out_features: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(max(in_features, out_features), min(in_features, out_features),
                        generator=g)
        q, _ = torch.linalg.qr(a)
        weight = q if out_features >= in_features else q.T
        self.register_buffer("weight", weight.contiguous())  # [d_out, d_in]
        self.in_features, self.out_features, self.seed = in_features, out_features, seed

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T


@EMBEDDINGS.register("GrayToRGB")
class GrayToRGB(nn.Module):
    """``[n, 1, h, w] -> [n, 3, h, w]`` by repeating the grey channel."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise InputError(f"GrayToRGB needs [n, 1, h, w] images, got {tuple(x.shape)}")
        return x.expand(-1, 3, -1, -1)


def build_embedding(spec: dict) -> nn.Module:
    """An embedding from ``{"name": ..., **kwargs}``; the spec is kept for checkpoints."""
    return EMBEDDINGS.build(spec)


__all__ = ["Reshape", "Upsample", "LinearProjection", "GrayToRGB", "build_embedding"]
