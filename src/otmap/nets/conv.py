"""Convolutional networks for images ``[n, c, h, w]`` in ``[-1, 1]``.

* :class:`ResNetPotential`: ``f: image -> R``, residual blocks with average-pool down-sampling
  (the NCSN / WGAN-QC style potentials of the references), configurable width, depth and norm;
* :class:`UpsampleGenerator`: noise vector ``[n, nz] -> image`` (OTM's generator: a 4x4 seed,
  then x2 up-sampling conv blocks, tanh);
* :class:`UNet`: image -> image maps (NOT's UNet), with optional extra input channels for noise;
* :class:`CondUNet`: the UNet with a noise vector entering through conditional normalisation
  (FiLM) in every block (KNOT's CUNet): ``net(x, z)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from otmap.errors import InputError

NORMS = ("none", "batch", "instance", "group")


def norm2d(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer by name (``"none"``, ``"batch"``, ``"instance"``, ``"group"``).

    Batch norm keeps no running statistics: it always normalises with the batch's (the OTM
    generator's choice), so training and sampling behave alike.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels, track_running_stats=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(32, channels // 4 or 1), channels)
    raise InputError(f"unknown norm {kind!r}; choose one of {list(NORMS)}")


class FiLM(nn.Module):
    """Feature-wise modulation of ``h [B, c, h, w]`` by a condition ``w [B, cond_dim]``:
    ``h * (1 + gamma(w)) + beta(w)`` with per-channel ``gamma, beta [B, c]`` from one linear
    layer, zero-initialised so that ``h`` passes unchanged at start."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, w: Tensor) -> Tensor:
        gamma, beta = self.proj(w)[:, :, None, None].chunk(2, dim=1)
        return torch.addcmul(beta, h, 1 + gamma)


class _Block(nn.Module):
    """``x -> skip(x) + conv(act(norm(conv(act(norm(x))))))`` with optional x2 resampling.

    After :meth:`condition`, ``forward(x, w)`` modulates each norm's output by a :class:`FiLM`
    of the condition ``w [B, cond_dim]`` (``norm(h) * (1 + gamma(w)) + beta(w)``).
    """

    def __init__(self, c_in: int, c_out: int, norm: str, resample: str | None) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.2)
        # a Sequential for its state-dict names; forward runs its layers one by one
        self.body = nn.Sequential(norm2d(norm, c_in), act, nn.Conv2d(c_in, c_out, 3, padding=1),
                                  norm2d(norm, c_out), act,
                                  nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.resample = {"down": nn.AvgPool2d(2), "up": nn.Upsample(scale_factor=2),
                         None: nn.Identity()}[resample]
        self.up_first = resample == "up"
        self.channels = (c_in, c_out)
        self.films: nn.ModuleList | None = None

    def condition(self, cond_dim: int) -> None:
        """Add the (zero-initialised) FiLMs of the two norms for conditions of ``cond_dim``."""
        self.films = nn.ModuleList(FiLM(cond_dim, c) for c in self.channels)

    def _norm(self, i: int, h: Tensor, w: Tensor | None) -> Tensor:
        """The ``i``-th norm of the body, modulated by ``w`` when given."""
        h = self.body[3 * i](h)
        return h if w is None else self.films[i](h, w)

    def forward(self, x: Tensor, w: Tensor | None = None) -> Tensor:
        if self.up_first:
            x = self.resample(x)
        _, act, conv1, _, _, conv2 = self.body
        h = conv1(act(self._norm(0, x, w)))
        out = self.skip(x) + conv2(act(self._norm(1, h, w)))
        return out if self.up_first else self.resample(out)


class ResNetPotential(nn.Module):
    """``f([n, c, h, w]) -> [n]``: conv stem, one down-sampling residual block per entry of
    ``channels`` (``h`` halves each time), spatial mean, linear head."""

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (64, 128, 256, 256),
                 norm: str = "none") -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        sizes = [channels[0], *channels]
        self.blocks = nn.Sequential(*[_Block(a, b, norm, "down")
                                      for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nn.Linear(channels[-1], 1)

    def forward(self, y: Tensor) -> Tensor:
        h = nn.functional.leaky_relu(self.blocks(self.stem(y)), 0.2)
        return self.head(h.mean((2, 3))).squeeze(-1)


class UpsampleGenerator(nn.Module):
    """``[n, nz] -> [n, c, size, size]``: linear to a 4x4 seed of ``channels[0]`` maps, then one
    x2 up-sampling residual block per further entry of ``channels`` (so ``size = 4 * 2^k``), a
    conv to ``out_channels`` and tanh."""

    def __init__(self, nz: int, out_channels: int = 3, size: int = 32,
                 channels: Sequence[int] | None = None, norm: str = "batch") -> None:
        super().__init__()
        ups = int(round(math.log2(size / 4)))
        if 4 * 2**ups != size:
            raise InputError(f"UpsampleGenerator needs size = 4 * 2^k, got {size}")
        channels = list(channels) if channels is not None else [256] * (ups + 1)
        if len(channels) != ups + 1:
            raise InputError(f"size {size} needs {ups + 1} channel entries, got {len(channels)}")
        self.seed = nn.Linear(nz, channels[0] * 16)
        self.blocks = nn.Sequential(*[_Block(a, b, norm, "up")
                                      for a, b in zip(channels[:-1], channels[1:])])
        self.out = nn.Sequential(norm2d(norm, channels[-1]), nn.LeakyReLU(0.2),
                                 nn.Conv2d(channels[-1], out_channels, 3, padding=1), nn.Tanh())
        self.c0 = channels[0]

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2:
            z = z.flatten(1)
        return self.out(self.blocks(self.seed(z).view(z.shape[0], self.c0, 4, 4)))


class UNet(nn.Module):
    """Image -> image: an encoder of down-sampling blocks, a decoder of up-sampling blocks with
    skip connections (concatenated), and a 1x1 output conv. ``in_channels`` may exceed
    ``out_channels`` (noise channels of a stochastic map). ``residual`` adds the first
    ``out_channels`` input channels to the output, so the map starts at the identity (the last
    conv starts at zero); ``tanh`` bounds the output to ``[-1, 1]``."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 channels: Sequence[int] = (48, 96, 192), norm: str = "group",
                 residual: bool = True, tanh: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList(_Block(a, b, norm, "down")
                                  for a, b in zip(channels[:-1], channels[1:]))
        rev = list(channels[::-1])
        self.up = nn.ModuleList(_Block(a, b, norm, "up") for a, b in zip(rev[:-1], rev[1:]))
        self.merge = nn.ModuleList(nn.Conv2d(2 * b, b, 1) for b in rev[1:])
        self.out = nn.Conv2d(channels[0], out_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.residual, self.tanh, self.out_channels = residual, tanh, out_channels
        self.factor = 2 ** (len(channels) - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, None)

    def _forward(self, x: Tensor, w: Tensor | None) -> Tensor:
        """The UNet on ``x [B, c, h, w]``, every block conditioned on ``w`` when given."""
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise InputError(f"{type(self).__name__} with {len(self.down)} down-samplings needs "
                             f"image sizes divisible by {self.factor}, got {tuple(x.shape[-2:])}")
        h = self.stem(x)
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(h, w)
        for block, merge in zip(self.up, self.merge):
            h = merge(torch.cat([block(h, w), skips.pop()], dim=1))
        out = self.out(h)
        if self.residual:
            out = out + x[:, : self.out_channels]
        return torch.tanh(out) if self.tanh else out


class CondUNet(UNet):
    """``net(x [B, c, h, w], z [B, noise_dim]) -> [B, out_channels, h, w]``: the :class:`UNet`
    (same blocks, parameter names and initialisation for a seed) whose noise vector enters
    through conditional normalisation, after KNOT's CUNet: a mapping MLP
    ``w = mlp(z) [B, cond_width]``, then in every down and up block each norm becomes
    ``norm(h) * (1 + gamma(w)) + beta(w)`` (:class:`FiLM`; with ``norm="none"`` it modulates
    the un-normalised features).

    The FiLMs start at zero, so at initialisation ``net(x, z) = UNet(x)`` for every ``z`` (the
    identity with ``residual``); the noise's influence is learnt.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 channels: Sequence[int] = (48, 96, 192), norm: str = "group",
                 residual: bool = True, tanh: bool = False, noise_dim: int = 128,
                 cond_width: int = 128) -> None:
        super().__init__(in_channels, out_channels, channels, norm, residual, tanh)
        self.mapping = nn.Sequential(nn.Linear(noise_dim, cond_width), nn.LeakyReLU(0.2),
                                     nn.Linear(cond_width, cond_width), nn.LeakyReLU(0.2))
        for block in (*self.down, *self.up):
            block.condition(cond_width)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self._forward(x, self.mapping(z))
