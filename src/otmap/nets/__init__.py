"""Networks for maps and potentials, buildable from plain config dicts (see :func:`build_net`)."""

from __future__ import annotations

from torch import nn

from otmap.nets.conv import CondUNet, ResNetPotential, UNet, UpsampleGenerator
from otmap.nets.icnn import DenseICNN, GradientICNNMap
from otmap.nets.mlp import MapMLP, PotentialMLP
from otmap.utils.registry import Registry

#: the networks by class name
NETS: Registry[nn.Module] = Registry("network")
NETS.register("MapMLP", MapMLP)
NETS.register("PotentialMLP", PotentialMLP)
NETS.register("GradientICNNMap", GradientICNNMap)
NETS.register("ResNetPotential", ResNetPotential)
NETS.register("UpsampleGenerator", UpsampleGenerator)
NETS.register("UNet", UNet)
NETS.register("CondUNet", CondUNet)


def build_net(spec: dict) -> nn.Module:
    """Build a network from ``{"name": ..., **kwargs}`` (a checkpoint stores these specs)."""
    return NETS.build(spec)


__all__ = [
    "NETS", "CondUNet", "DenseICNN", "GradientICNNMap", "MapMLP", "PotentialMLP", "ResNetPotential",
    "UNet", "UpsampleGenerator", "build_net",
]
