"""Networks for maps and potentials, buildable from plain config dicts (see :func:`build_net`)."""

from __future__ import annotations

from torch import nn

from otmap.nets.conv import ResNetPotential, UNet, UpsampleGenerator
from otmap.nets.mlp import MapMLP, PotentialMLP
from otmap.utils.registry import build_from_spec

NETS: dict[str, type[nn.Module]] = {
    "MapMLP": MapMLP, "PotentialMLP": PotentialMLP, "ResNetPotential": ResNetPotential,
    "UpsampleGenerator": UpsampleGenerator, "UNet": UNet,
}


def build_net(spec: dict) -> nn.Module:
    """Build a network from ``{"name": ..., **kwargs}`` (a checkpoint stores these specs)."""
    return build_from_spec(NETS, spec, "network")


__all__ = ["NETS", "MapMLP", "PotentialMLP", "ResNetPotential", "UNet", "UpsampleGenerator",
           "build_net"]
