"""Transport maps: a network wrapped with the sampling interface the solver uses.

Every map exposes ``sample(x [B, *in_dims], k) -> [B, k, *out_dims]``. A deterministic map
returns the same output ``k`` times (the solver asks for ``k = 1``); a stochastic map
``T(x, z)`` draws ``k`` noises per input.
"""

from __future__ import annotations

from torch import Tensor, nn


class TransportMap(nn.Module):
    """Base class of transport maps."""

    stochastic: bool = False

    def sample(self, x: Tensor, k: int = 1) -> Tensor:
        raise NotImplementedError


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
