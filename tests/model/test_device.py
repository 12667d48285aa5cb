"""TransportResult.device for maps with and without parameters: the map's parameters, then its
buffers, then the potential's tensors, then the CPU."""

from __future__ import annotations

import torch
from torch import nn

from otmap.core.costs import StrongQuadratic
from otmap.core.maps import DeterministicMap
from otmap.model.result import TransportResult


class Shift(nn.Module):
    """A map without parameters: ``x + offset``, the offset a buffer."""

    def __init__(self, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


def _result(net: nn.Module, potential: nn.Module | None = None) -> TransportResult:
    return TransportResult(DeterministicMap(net), cost=StrongQuadratic(), source_shape=(3,),
                           target_shape=(3,), potential=potential)


def test_the_maps_parameters_come_first():
    net = nn.Linear(3, 3, device="meta")
    assert _result(net, potential=nn.Linear(3, 1)).device.type == "meta"


def test_a_map_without_parameters_uses_its_buffers():
    offset = torch.zeros(3, device="meta")
    assert _result(Shift(offset), potential=nn.Linear(3, 1)).device.type == "meta"
    result = _result(Shift(torch.tensor([1.0, 2.0, 3.0])))
    assert result.device == torch.device("cpu")
    assert torch.equal(result.transport(torch.zeros(2, 3)), torch.tensor([[1.0, 2.0, 3.0]] * 2))


def test_a_map_without_tensors_uses_the_potential_then_the_cpu():
    assert _result(nn.Identity(), potential=nn.Linear(3, 1, device="meta")).device.type == "meta"
    result = _result(nn.Identity())
    assert result.device == torch.device("cpu")
    x = torch.randn(4, 3)
    assert torch.equal(result.transport(x), x)
    assert result.to("meta").device == torch.device("cpu")  # nothing to move
