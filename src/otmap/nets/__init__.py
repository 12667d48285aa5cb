"""Networks for maps and potentials, buildable from plain config dicts (see :func:`build_net`)."""

from __future__ import annotations

from torch import nn

from otmap.errors import InputError
from otmap.nets.conv import ResNetPotential, UNet, UpsampleGenerator
from otmap.nets.mlp import MapMLP, PotentialMLP

NETS: dict[str, type[nn.Module]] = {
    "MapMLP": MapMLP, "PotentialMLP": PotentialMLP, "ResNetPotential": ResNetPotential,
    "UpsampleGenerator": UpsampleGenerator, "UNet": UNet,
}


def build_net(spec: dict) -> nn.Module:
    """Build a network from ``{"name": ..., **kwargs}`` (a checkpoint stores these specs)."""
    kwargs = dict(spec)
    name = kwargs.pop("name", None)
    if name not in NETS:
        raise InputError(f"unknown network {name!r}; choose one of {sorted(NETS)}")
    try:
        net = NETS[name](**kwargs)
    except TypeError as err:
        raise InputError(f"bad arguments for network {name}: {err}") from None
    net.otmap_spec = dict(spec)
    return net


__all__ = ["NETS", "MapMLP", "PotentialMLP", "ResNetPotential", "UNet", "UpsampleGenerator",
           "build_net"]
