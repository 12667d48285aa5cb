"""Transport maps: a network wrapped with the sampling interface the solver uses.

Every map exposes ``sample(x [B, *in_dims], k) -> [B, k, *out_dims]``. A deterministic map
returns the same output ``k`` times (the solver asks for ``k = 1``); a stochastic map
``T(x, z)`` draws ``k`` noises per input; its :class:`NoiseInjection` says how z enters the
network (extra inputs ``net(cat[x, z])`` or a condition ``net(x, z)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from otmap.errors import InputError


class TransportMap(nn.Module):
    """Base class of transport maps."""

    stochastic: bool = False

    def sample(self, x: Tensor, k: int = 1) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def fit_scaling(self, x: Tensor, y: Tensor) -> None:
        """Let a network with data-dependent input/output scaling (``net.fit_scaling``) see
        source samples ``x`` and target samples ``y``."""
        if hasattr(self.net, "fit_scaling"):
            self.net.fit_scaling(x, y)


class DeterministicMap(TransportMap):
    """``T(x) = net(x)``; ``sample(x, k)`` repeats the output ``k`` times (a view, no copy)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def sample(self, x: Tensor, k: int = 1) -> Tensor:
        y = self.net(x).unsqueeze(1)
        return y.expand(-1, k, *y.shape[2:])


class NoiseInjection:
    """How the noise z of a stochastic map enters its network: z drawn by :meth:`noise` in the
    shape :meth:`apply` feeds to the network (by default ``net(cat[x, z], dim=1)``)."""

    def __init__(self, noise_dim: int) -> None:
        self.noise_dim = noise_dim

    def noise(self, x: Tensor) -> Tensor:
        """Standard Gaussian noise for a batch ``x`` (on x's device and dtype)."""
        raise NotImplementedError

    def apply(self, net: nn.Module, x: Tensor, z: Tensor) -> Tensor:
        """The network's output for inputs ``x`` and noises ``z``: ``net(cat[x, z], dim=1)``."""
        return net(torch.cat([x, z], dim=1))


class ConcatNoise(NoiseInjection):
    """Vectors ``x [B, d]``: ``noise_dim`` extra input features."""

    def noise(self, x: Tensor) -> Tensor:
        return torch.randn((x.shape[0], self.noise_dim), device=x.device, dtype=x.dtype)


class ChannelNoise(NoiseInjection):
    """Images ``x [B, c, h, w]``: ``noise_dim`` extra channels at full resolution (in x's
    memory layout)."""

    def noise(self, x: Tensor) -> Tensor:
        z = torch.randn((x.shape[0], self.noise_dim, *x.shape[2:]), device=x.device,
                        dtype=x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):
            z = z.contiguous(memory_format=torch.channels_last)
        return z


class ConditionNoise(NoiseInjection):
    """A noise vector ``z [B, noise_dim]`` that conditions the network: ``net(x, z)`` (e.g. a
    :class:`~otmap.nets.conv.CondUNet`, whose normalisations it modulates)."""

    def noise(self, x: Tensor) -> Tensor:
        return torch.randn((x.shape[0], self.noise_dim), device=x.device, dtype=x.dtype)

    def apply(self, net: nn.Module, x: Tensor, z: Tensor) -> Tensor:
        return net(x, z)


#: the ``inject`` names of a map spec's ``noise`` entry
INJECTIONS: dict[str, type[NoiseInjection]] = {"concat": ConcatNoise, "channels": ChannelNoise,
                                               "condition": ConditionNoise}


class StochasticMap(TransportMap):
    """``T(x, z)`` with Gaussian noise ``z ~ N(0, noise_std^2 I)``, drawn fresh per call;
    ``inject`` names the :class:`NoiseInjection` that feeds z to the network (``"concat"``:
    vectors, ``net(cat[x, z])``; ``"channels"``: images, noise channels ``net(cat[x, z])``;
    ``"condition"``: a noise vector, ``net(x, z)``).

    ``sample(x, k)`` repeats each input ``k`` times with independent noises: ``[B, k, *dims]``.
    """

    stochastic = True

    def __init__(self, net: nn.Module, noise_dim: int, noise_std: float = 1.0,
                 inject: str = "concat") -> None:
        super().__init__()
        if inject not in INJECTIONS:
            raise InputError(f"unknown noise injection {inject!r}; choose one of "
                             f"{list(INJECTIONS)}")
        if noise_dim < 1 or not noise_std > 0:
            raise InputError(f"noise_dim must be >= 1 and noise_std > 0, got {noise_dim}, "
                             f"{noise_std}")
        self.net, self.noise_dim, self.noise_std, self.inject = net, noise_dim, noise_std, inject
        self.injection = INJECTIONS[inject](noise_dim)

    def noise(self, x: Tensor) -> Tensor:
        """Fresh noise for a batch ``x`` (on x's device and dtype)."""
        return self.injection.noise(x) * self.noise_std

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """``T(x, z)`` for one noise per input (fresh noise when ``z`` is None)."""
        z = self.noise(x) if z is None else z
        return self.injection.apply(self.net, x, z)

    def sample(self, x: Tensor, k: int = 1) -> Tensor:
        xs = x.repeat_interleave(k, dim=0)
        y = self.forward(xs)
        return y.view(x.shape[0], k, *y.shape[1:])

    @torch.no_grad()
    def fit_scaling(self, x: Tensor, y: Tensor) -> None:
        """Standardise the data inputs of a scaled network; noise inputs keep their raw scale
        (``noise_std`` is a modelling choice, as in the reference code)."""
        if not isinstance(self.injection, ConcatNoise) or not hasattr(self.net, "fit_scaling"):
            return
        self.net.fit_scaling(torch.cat([x, self.noise(x)], dim=1), y)
        self.net.in_shift[x.shape[1]:] = 0.0
        self.net.in_scale[x.shape[1]:] = 1.0


__all__ = ["TransportMap", "DeterministicMap", "StochasticMap", "NoiseInjection", "ConcatNoise",
           "ChannelNoise", "ConditionNoise", "INJECTIONS"]
