"""Speed options of a run: mixed precision, channels-last memory layout, ``torch.compile``.

Each option is a ``TrainConfig`` field with an ``"auto"`` choice that picks what pays off on
the device at hand (measured in docs/benchmarks.md):

* ``precision``: ``"auto"`` runs the networks under bf16 autocast where the hardware has
  native bf16 matrix units (a CUDA GPU of compute capability >= 8, a CPU with AMX) and keeps
  float32 elsewhere (hardware without them emulates bf16, slower than float32); ``"fp32"``;
  ``"bf16"`` (any device). Parameters, optimiser states, costs and losses stay float32 (no
  loss scaling is needed).
* ``channels_last``: ``"auto"`` stores otmap's conv nets and image batches channels-last,
  which oneDNN and cuDNN convolutions run faster (``true``: user modules too); ignored for
  vector data.
* ``compile``: ``torch.compile`` the map's and the potential's networks (off by default: it
  costs a compile at start; the potential is left eager when a gradient regulariser needs
  double backward, which compiled graphs do not support).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from otmap.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices natively: a CUDA GPU of compute capability
    8 or later (Ampere, Hopper...), or a CPU with AMX tiles."""
    if device.type == "cuda":  # Ampere and later; older GPUs only emulate bf16
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx is not None and amx())
    return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (None: float32 throughout)."""
    if precision not in PRECISIONS:
        raise InputError(f"train.precision must be one of {list(PRECISIONS)}, got {precision!r} "
                         "(fp16 is not offered: it needs loss scaling; bf16 does not)")
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def use_channels_last(option: Any, images: bool, custom_modules: bool = False) -> bool:
    """Whether conv nets and image batches are stored channels-last: ``auto`` for otmap's own
    networks on image data (a user's module may reshape with ``view``, which needs the
    default layout), ``true`` for any image networks."""
    if option not in ("auto", True, False):
        raise InputError(f"train.channels_last must be auto, true or false, got {option!r}")
    return images and (option is True or (option == "auto" and not custom_modules))


def to_channels_last(*modules: nn.Module) -> None:
    """Store the 4-D weights of ``modules`` channels-last (in place)."""
    for module in modules:
        module.to(memory_format=torch.channels_last)


def compile_networks(transport_map: nn.Module, potential: nn.Module, *,
                     double_backward: bool) -> None:
    """``torch.compile`` the map's network and the potential in place (state dicts keep their
    keys); the potential stays eager when ``double_backward`` (OTM-GP, gradient optimality)."""
    net = getattr(transport_map, "net", transport_map)
    net.compile()
    if double_backward:
        warnings.warn("train.compile: the potential stays uncompiled because the gradient "
                      "penalty / gradient optimality term needs double backward", stacklevel=3)
        return
    potential.compile()
