"""Modules built from plain ``{"name": ..., **kwargs}`` specs, which checkpoints store."""

from __future__ import annotations

from torch import nn

from otmap.errors import InputError


def build_from_spec(registry: dict[str, type[nn.Module]], spec: dict, what: str) -> nn.Module:
    """``registry[spec["name"]](**rest)``, remembering ``spec`` as ``module.otmap_spec``."""
    kwargs = dict(spec)
    name = kwargs.pop("name", None)
    if name not in registry:
        raise InputError(f"unknown {what} {name!r}; choose one of {sorted(registry)}")
    try:
        module = registry[name](**kwargs)
    except TypeError as err:
        raise InputError(f"bad arguments for {what} {name}: {err}") from None
    module.otmap_spec = dict(spec)
    return module
