"""Toy 1-D/2-D distributions used in the OTM, NOT and KNOT papers.

Every sampler draws from torch's global RNG (or an explicit ``torch.Generator``), returns
CPU float32 tensors ``[n, dim]`` and can optionally be whitened (``whiten=True``).

>>> x = toy("8blobs").sample(512)  # [512, 2]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from otmap.data.samplers import _check_count
from otmap.errors import InputError
from otmap.utils.checks import check_positive, check_positive_int, check_real
from otmap.utils.registry import Registry

__all__ = ["ToySampler", "TOY_DATASETS", "toy"]

DrawFn = Callable[[int, torch.Generator | None], Tensor]

_WHITEN_SAMPLES = 1000
_WHITEN_SEED = 0

#: the toy distributions by name: factories of :class:`ToySampler`
TOY_DATASETS: Registry[ToySampler] = Registry("toy dataset")


class ToySampler:
    """A named toy distribution: ``sample(n, generator=None) -> Tensor [n, dim]`` float32.

    ``draw(n, generator)`` produces the raw samples. With ``whiten=True`` every coordinate is
    standardised with a mean/std fixed from 1000 samples drawn with a fixed-seed generator,
    so whitening is deterministic and never touches the global RNG.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        draw: DrawFn,
        whiten: bool = False,
        params: dict[str, object] | None = None,
    ) -> None:
        self.name = name
        self.dim = dim
        self.whiten = whiten
        self.params = dict(params or {})
        self._draw = draw
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        if whiten:
            ref = draw(_WHITEN_SAMPLES, torch.Generator().manual_seed(_WHITEN_SEED))
            self.mean, self.std = ref.mean(dim=0), ref.std(dim=0)
            if bool((self.std <= 0).any()):
                raise InputError(
                    f"toy '{name}' cannot be whitened: a coordinate has zero variance "
                    f"(std={self.std.tolist()}): use noise > 0 or whiten=False"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape ``(dim,)``."""
        return (self.dim,)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"ToySampler({self.name!r}, dim={self.dim}{args}, whiten={self.whiten})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``[n, dim]`` float32 samples (whitened if ``whiten=True``)."""
        x = self._draw(_check_count(n), generator)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x


# ----------------------------------------------------------------------------- checks


def _positive(what: str, value: float) -> float:
    return check_positive(what, value, fix="pass e.g. 1.0")


def _non_negative(what: str, value: float) -> float:
    return check_real(what, value, at_least=0, fix="pass e.g. 0.05")


def _count(what: str, value: int) -> int:
    return check_positive_int(what, value, fix="pass e.g. 3")


def _centers_tensor(centers: Sequence[Sequence[float]] | Sequence[float], what: str) -> Tensor:
    """Parse centres given as ``[[x, y], ...]`` (or ``[c1, c2, ...]`` for 1-D) -> ``[k, d]``."""
    try:
        c = torch.as_tensor(centers, dtype=torch.float32)
    except (TypeError, ValueError):
        raise InputError(
            f"{what} must be a list of equal-length coordinate lists, got {centers!r}: "
            "pass e.g. [[-2, 0], [2, 0]] (or [-4.5, 4.5] in 1-D)"
        ) from None
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1 or not bool(torch.isfinite(c).all()):
        raise InputError(
            f"{what} must be a non-empty list of finite points [k, d], got shape "
            f"{tuple(c.shape)}: pass e.g. [[-2, 0], [2, 0]]"
        )
    return c


# ----------------------------------------------------------------------------- helpers


def _randn(n: int, d: int, g: torch.Generator | None) -> Tensor:
    return torch.randn(n, d, generator=g)


def _rand(n: int, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=g)


def _on_circle(angle: Tensor, radius: Tensor | float) -> Tensor:
    """``[n]`` angles (and radii) -> ``[n, 2]`` points."""
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * (
        radius[:, None] if isinstance(radius, Tensor) else radius
    )


def _mixture(name: str, c: Tensor, std: float, whiten: bool, params: dict) -> ToySampler:
    """Equal-weight mixture of isotropic Gaussians ``N(c_k, std^2 I)``; ``c`` is ``[k, d]``."""

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        k = torch.randint(c.shape[0], (n,), generator=g)
        return c[k] + std * _randn(n, c.shape[1], g)

    return ToySampler(name, c.shape[1], draw, whiten, params)


def _circle_centers(n_components: int, radius: float) -> Tensor:
    angle = 2 * math.pi * torch.arange(n_components, dtype=torch.float32) / n_components
    return _on_circle(angle, radius)


# ----------------------------------------------------------------------------- datasets


@TOY_DATASETS.register("gaussian")
def gaussian(
    dim: int = 2, mean: float | Sequence[float] = 0.0, std: float = 1.0, whiten: bool = False
) -> ToySampler:
    """Isotropic Gaussian ``N(mean, std^2 I)`` in ``dim`` dimensions (default ``N(0, I)``)."""
    dim = _count("gaussian: dim", dim)
    std = _positive("gaussian: std", std)
    m = torch.as_tensor(mean, dtype=torch.float32).flatten()
    if m.numel() not in (1, dim) or not bool(torch.isfinite(m).all()):
        raise InputError(
            f"gaussian: mean must be a finite number or a list of {dim} numbers, got {mean!r}: "
            f"pass e.g. mean=0.0 or mean={[0.0] * dim}"
        )
    m = m.expand(dim).clone()

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        return m + std * _randn(n, dim, g)

    return ToySampler("gaussian", dim, draw, whiten, {"mean": mean, "std": std})


@TOY_DATASETS.register("gaussian_mixture")
def gaussian_mixture(
    centers: Sequence[Sequence[float]] | None = None,
    n_components: int = 8,
    radius: float = 4.0,
    std: float = 0.5,
    whiten: bool = False,
) -> ToySampler:
    """Equal-weight Gaussian mixture with component std ``std``.

    Centres are ``centers`` ([k, d] list) if given, else ``n_components`` points evenly
    spaced on a circle of radius ``radius`` (default: 8 blobs at radius 4, std 0.5).
    """
    std = _positive("gaussian_mixture: std", std)
    if centers is not None:
        c = _centers_tensor(centers, "gaussian_mixture: centers")
        params: dict[str, object] = {"centers": c.tolist(), "std": std}
    else:
        n_components = _count("gaussian_mixture: n_components", n_components)
        radius = _positive("gaussian_mixture: radius", radius)
        c = _circle_centers(n_components, radius)
        params = {"n_components": n_components, "radius": radius, "std": std}
    return _mixture("gaussian_mixture", c, std, whiten, params)


def _blobs(name: str, k: int, radius: float, std: float, whiten: bool) -> ToySampler:
    """``k`` Gaussians (std ``std``) evenly spaced on a circle of radius ``radius``."""
    radius = _positive(f"{name}: radius", radius)
    std = _positive(f"{name}: std", std)
    return _mixture(name, _circle_centers(k, radius), std, whiten,
                    {"radius": radius, "std": std})


@TOY_DATASETS.register("3blobs")
def three_blobs(radius: float = 4.0, std: float = 0.5, whiten: bool = False) -> ToySampler:
    """3 Gaussians (std ``std``) at 120-degree steps on a circle of radius ``radius``."""
    return _blobs("3blobs", 3, radius, std, whiten)


@TOY_DATASETS.register("8blobs")
def eight_blobs(radius: float = 4.0, std: float = 0.5, whiten: bool = False) -> ToySampler:
    """8 Gaussians (std ``std``) evenly spaced on a circle of radius ``radius``."""
    return _blobs("8blobs", 8, radius, std, whiten)


@TOY_DATASETS.register("grid")
def grid(spacing: float = 4.0, std: float = 0.5, whiten: bool = False) -> ToySampler:
    """2x2 grid of Gaussians at ``(+-spacing/2, +-spacing/2)`` with std ``std``."""
    spacing = _positive("grid: spacing", spacing)
    std = _positive("grid: std", std)
    h = spacing / 2
    c = torch.tensor([[-h, -h], [-h, h], [h, -h], [h, h]])
    return _mixture("grid", c, std, whiten, {"spacing": spacing, "std": std})


@TOY_DATASETS.register("moons")
def moons(noise: float = 0.05, scale: float = 1.0, whiten: bool = False) -> ToySampler:
    """Two interleaved unit half circles, centred at the origin, plus Gaussian ``noise``.

    With ``scale=1`` the support is about x in [-1.5, 1.5], y in [-0.75, 0.75]: the upper
    moon is centred at (-0.5, -0.25), the lower (flipped) moon at (0.5, 0.25).
    """
    noise = _non_negative("moons: noise", noise)
    scale = _positive("moons: scale", scale)
    centre = torch.tensor([[-0.5, -0.25], [0.5, 0.25]])
    flip = torch.tensor([1.0, -1.0])

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        which = torch.randint(2, (n,), generator=g)
        arc = _on_circle(math.pi * _rand(n, g), 1.0) * flip[which][:, None]
        return scale * (centre[which] + arc + noise * _randn(n, 2, g))

    return ToySampler("moons", 2, draw, whiten, {"noise": noise, "scale": scale})


@TOY_DATASETS.register("swiss_roll")
def swiss_roll(noise: float = 0.1, scale: float = 1.0, whiten: bool = False) -> ToySampler:
    """2-D Swiss roll ``t (cos t, sin t) / 7.5`` with ``t ~ U[1.5 pi, 4.5 pi]`` plus ``noise``.

    With ``scale=1`` the spiral's radius runs from 0.63 to 1.88 (as in the NOT paper).
    """
    noise = _non_negative("swiss_roll: noise", noise)
    scale = _positive("swiss_roll: scale", scale)

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
        return scale * (_on_circle(t, t / 7.5) + noise * _randn(n, 2, g))

    return ToySampler("swiss_roll", 2, draw, whiten, {"noise": noise, "scale": scale})


@TOY_DATASETS.register("s_curve")
def s_curve(noise: float = 0.05, scale: float = 1.0, whiten: bool = False) -> ToySampler:
    """2-D 'S' made of two 3/4 unit circles centred at (0, +-1), plus Gaussian ``noise``.

    Points are ``(sin t, sign(t) (cos t - 1))`` with ``t ~ U[-1.5 pi, 1.5 pi]``; with
    ``scale=1`` the support is x in [-1, 1], y in [-2, 2].
    """
    noise = _non_negative("s_curve: noise", noise)
    scale = _positive("s_curve: scale", scale)

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        t = 3 * math.pi * (_rand(n, g) - 0.5)
        xy = torch.stack([torch.sin(t), -torch.sign(t) * (torch.cos(t) - 1)], dim=1)
        return scale * (xy + noise * _randn(n, 2, g))

    return ToySampler("s_curve", 2, draw, whiten, {"noise": noise, "scale": scale})


@TOY_DATASETS.register("circles")
def circles(
    radius: float = 2.0, factor: float = 0.5, noise: float = 0.05, whiten: bool = False
) -> ToySampler:
    """Two concentric circles of radii ``radius`` and ``factor * radius`` (equal mass).

    Gaussian ``noise`` is added to both coordinates.
    """
    radius = _positive("circles: radius", radius)
    noise = _non_negative("circles: noise", noise)
    factor = check_real("circles: factor (inner/outer radius ratio)", factor, above=0, below=1,
                        fix="pass e.g. factor=0.5")

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        inner = torch.randint(2, (n,), generator=g).float()
        r = radius * (1 - (1 - factor) * inner)
        return _on_circle(2 * math.pi * _rand(n, g), r) + noise * _randn(n, 2, g)

    params = {"radius": radius, "factor": factor, "noise": noise}
    return ToySampler("circles", 2, draw, whiten, params)


@TOY_DATASETS.register("uniform_square")
def uniform_square(side: float = 4.0, whiten: bool = False) -> ToySampler:
    """Uniform on ``[-side/2, side/2]^2`` (default ``[-2, 2]^2``); variance ``side^2 / 12``."""
    side = _positive("uniform_square: side", side)

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        return side * (torch.rand(n, 2, generator=g) - 0.5)

    return ToySampler("uniform_square", 2, draw, whiten, {"side": side})


@TOY_DATASETS.register("noisy_circle")
def noisy_circle(radius: float = 2.0, noise: float = 0.1, whiten: bool = False) -> ToySampler:
    """Uniform angle on a circle of radius ``radius`` plus isotropic Gaussian ``noise``."""
    radius = _positive("noisy_circle: radius", radius)
    noise = _non_negative("noisy_circle: noise", noise)

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        return _on_circle(2 * math.pi * _rand(n, g), radius) + noise * _randn(n, 2, g)

    return ToySampler("noisy_circle", 2, draw, whiten, {"radius": radius, "noise": noise})


@TOY_DATASETS.register("unit_circle")
def unit_circle(whiten: bool = False) -> ToySampler:
    """Points uniform on the unit circle (all norms exactly 1)."""

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        return _on_circle(2 * math.pi * _rand(n, g), 1.0)

    return ToySampler("unit_circle", 2, draw, whiten)


# Strokes of each glyph in a box of height 2 (y in [-1, 1]) starting at x = 0, as
# (kind, a, b, c, d): kind 0 is a segment (a, b) -> (c, d); kind 1 a circle centred (a, b)
# of radius c. Widths are the glyph advance before the gap.
_GLYPHS: dict[str, tuple[float, list[tuple[int, float, float, float, float]]]] = {
    "O": (2.0, [(1, 1.0, 0.0, 1.0, 0.0)]),
    "T": (2.0, [(0, 0.0, 1.0, 2.0, 1.0), (0, 1.0, 1.0, 1.0, -1.0)]),
    "I": (0.0, [(0, 0.0, -1.0, 0.0, 1.0)]),
    "L": (1.4, [(0, 0.0, 1.0, 0.0, -1.0), (0, 0.0, -1.0, 1.4, -1.0)]),
}
_GLYPH_GAP = 0.6


@TOY_DATASETS.register("letters")
def letters(
    letters: str = "OT", noise: float = 0.05, scale: float = 1.0, whiten: bool = False
) -> ToySampler:
    """Points spread uniformly (by stroke length) on the letters of ``letters``, side by side.

    'O' is a ring, 'T' a top bar plus a stem; 'I' and 'L' are also available. Glyphs are
    2 units tall, and with ``scale=1`` 'OT' spans about x in [-2.3, 2.3], y in [-1, 1].
    Gaussian ``noise`` (before scaling) thickens the strokes.
    """
    noise = _non_negative("letters: noise", noise)
    scale = _positive("letters: scale", scale)
    text = letters.upper() if isinstance(letters, str) else ""
    unknown = sorted({ch for ch in text if ch not in _GLYPHS})
    if not text or unknown:
        raise InputError(
            f"letters: cannot draw {letters!r} (unsupported: {unknown or 'empty string'}): "
            f"use a string of the letters {''.join(_GLYPHS)}, e.g. letters='OT'"
        )
    offsets, x0 = [], 0.0
    for ch in text:
        offsets.append(x0)
        x0 += _GLYPHS[ch][0] + _GLYPH_GAP
    shift = (x0 - _GLYPH_GAP) / 2  # centres the text horizontally
    strokes = []
    for ch, offset in zip(text, offsets, strict=True):
        dx = offset - shift
        for kind, a, b, c, d in _GLYPHS[ch][1]:
            strokes.append((kind, a + dx, b, c + dx if kind == 0 else c, d))
    kind, a, b, c, d = torch.tensor(strokes).unbind(dim=1)
    seg_len = torch.hypot(c - a, d - b)
    length = torch.where(kind == 0, seg_len, 2 * math.pi * c)

    def draw(n: int, g: torch.Generator | None) -> Tensor:
        k = torch.multinomial(length, n, replacement=True, generator=g)
        u = _rand(n, g)
        seg = torch.stack([a[k] + u * (c[k] - a[k]), b[k] + u * (d[k] - b[k])], dim=1)
        ring = torch.stack([a[k], b[k]], dim=1) + _on_circle(2 * math.pi * u, c[k])
        xy = torch.where((kind[k] == 0)[:, None], seg, ring)
        return scale * (xy + noise * _randn(n, 2, g))

    params = {"letters": text, "noise": noise, "scale": scale}
    return ToySampler("letters", 2, draw, whiten, params)


@TOY_DATASETS.register("mixture_1d")
def mixture_1d(
    components: int = 3,
    centers: Sequence[float] | None = None,
    std: float = 1.0,
    whiten: bool = False,
) -> ToySampler:
    """1-D equal-weight Gaussian mixture, samples ``[n, 1]``.

    Default centres are spaced 9 apart around 0: ``components=3`` -> -9, 0, 9;
    ``components=2`` -> -4.5, 4.5. A ``centers`` list overrides them.
    """
    std = _positive("mixture_1d: std", std)
    if centers is None:
        components = _count("mixture_1d: components", components)
        c = 9.0 * (torch.arange(components, dtype=torch.float32) - (components - 1) / 2)
        c = c[:, None]
    else:
        c = _centers_tensor(centers, "mixture_1d: centers")
        if c.shape[1] != 1:
            raise InputError(
                f"mixture_1d: centers must be a flat list of numbers, got shape "
                f"{tuple(c.shape)}: pass e.g. centers=[-4.5, 4.5]"
            )
    params = {"centers": c.flatten().tolist(), "std": std}
    return _mixture("mixture_1d", c, std, whiten, params)


def toy(name: str, /, **kwargs: object) -> ToySampler:
    """Build the toy distribution ``name`` (a key of ``TOY_DATASETS``) with its keyword options.

    >>> toy("moons", noise=0.1, whiten=True).sample(4).shape
    torch.Size([4, 2])
    """
    sampler = TOY_DATASETS.make(name, **kwargs)
    sampler.name = name  # the registry key: toy(sampler.name, **sampler.params) rebuilds it
    sampler.params = dict(kwargs)
    return sampler
