"""Speed options of a run: mixed precision, channels-last memory layout, ``torch.compile``.

Each option is a ``TrainConfig`` field with an ``"auto"`` choice that picks what pays off on
the device at hand (measured in docs/benchmarks.md):

* ``precision``: ``"auto"`` measures where the hardware has a native bf16 path (a CUDA GPU of
  compute capability >= 8; a CPU with AMX or AVX512-BF16): it times a few training steps of
  the run's own networks on batches of its data in float32 and under bf16 autocast (a few
  hundred milliseconds at the start, :func:`time_precisions`) and keeps bf16 only when a
  float32 step took at least :data:`BF16_MARGIN` times as long in every paired timing (so
  that noise, as from other processes, rarely decides), so it never picks a precision slower
  than float32 on the machine it measured. Without a native path (bf16 emulated, slower
  than float32), and for runs of fewer than :data:`MEASURED_STEPS` steps (which the timing
  would not pay for), it runs float32 without measuring. ``"fp32"``; ``"bf16"`` (any device).
  Quality: bf16 reaches only what runs under autocast, the networks' forward and backward
  (matrix products and convolutions on bf16 inputs with float32 accumulation, and the
  element-wise layers between them on the bf16 tensors these produce; autocast keeps norms
  and reductions on its float32 list). Parameters, gradients, optimiser states, the network
  outputs fed to costs, the costs, losses and regularisers stay float32 (no loss scaling).
* ``channels_last``: ``"auto"`` stores otmap's conv nets and image batches channels-last,
  which oneDNN and cuDNN convolutions run faster (``true``: user modules too); ignored for
  vector data.
* ``compile``: ``torch.compile`` the map's and the potential's networks (off by default: it
  costs a compile at start; the potential is left eager when a gradient regulariser needs
  double backward, which compiled graphs do not support). ``precision="auto"`` measures the
  networks before they are compiled.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from otmap.core.solver import NeuralOT
from otmap.errors import InputError
from otmap.train.distributed import Ranks, mean_over_ranks

PRECISIONS = ("auto", "fp32", "bf16")

#: ``precision="auto"`` keeps bf16 only where a float32 step takes at least this many times as
#: long as a bf16 step (10 % faster) in every paired timing: a near tie is not worth bf16's
#: rounding
BF16_MARGIN = 1.10
#: seconds of timing rounds (both precisions together) in auto's measurement, after a
#: warm-up step and a timed step of each
TIMING_SECONDS = 0.3
#: at most this many paired timing rounds after the first timed pair
TIMING_ROUNDS = 3
#: ``precision="auto"`` measures only runs of at least this many steps (its timing takes
#: about ten steps' time)
MEASURED_STEPS = 500
#: CPU flags (Linux ``/proc/cpuinfo``) of native bf16 matrix instructions
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices natively: a CUDA GPU of compute capability
    8 or later (Ampere, Hopper...), or a CPU with AMX tiles or AVX512-BF16 (torch's own checks
    where it has them, else the CPU flags)."""
    if device.type == "cuda":  # Ampere and later; older GPUs only emulate bf16
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        checks = (getattr(torch.cpu, name, None)
                  for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
        return any(check is not None and check() for check in checks) or bool(
            _cpu_flags() & BF16_CPU_FLAGS)
    return False


def check_precision(precision: str) -> None:
    """:class:`InputError` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise InputError(f"train.precision must be one of {list(PRECISIONS)}, got {precision!r} "
                         "(fp16 is not offered: it needs loss scaling; bf16 does not)")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run computes its networks in: ``precision`` (``"fp32"`` or ``"bf16"``)
    for the ``requested`` option. For an ``"auto"`` that measured: ``seconds_per_step``, each
    precision's fastest (``{"fp32": s, "bf16": s}``), and ``speedup``, float32's time over
    bf16's in the least favourable of the paired timings of :func:`time_precisions`; for one
    that did not, the ``reason``."""

    requested: str
    precision: str
    seconds_per_step: dict[str, float] | None = None
    speedup: float | None = None
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: float32 throughout)."""
        return torch.bfloat16 if self.precision == "bf16" else None

    def describe(self) -> str:
        """E.g. ``bf16 autocast (auto: bf16 at least 1.40x as fast as float32, 9.1 ms vs 12.7
        ms per step at best; bf16 from 1.10x)``."""
        name = "bf16 autocast" if self.precision == "bf16" else "float32"
        if self.requested != "auto":
            return name
        if self.seconds_per_step is None:
            return f"{name} (auto: {self.reason})"
        fp32, bf16 = self.seconds_per_step["fp32"], self.seconds_per_step["bf16"]
        return (f"{name} (auto: bf16 at least {self.speedup:.2f}x as fast as float32, "
                f"{_duration(bf16)} vs {_duration(fp32)} per step at best; bf16 from "
                f"{BF16_MARGIN:.2f}x)")


def _duration(seconds: float) -> str:
    """``9.1 ms`` below a second, else ``4.23 s``."""
    return f"{1e3 * seconds:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA), so that a host clock times it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_precisions(solver: NeuralOT, x: Tensor, y: Tensor, *, seconds: float = TIMING_SECONDS,
                    rounds: int = TIMING_ROUNDS) -> dict[str, list[float]]:
    """Seconds per training step (``train_step`` with its ``k_map`` map updates on the fixed
    batches ``x`` and ``y``) of a copy of ``solver`` in float32 and under bf16 autocast, in
    paired timings: after a warm-up step of each, one step of each, then up to ``rounds``
    rounds of a few steps of each, as many as fit in about ``seconds``. Returns
    ``{"fp32": [s, ...], "bf16": [s, ...]}``, the i-th entries timed back to back.
    ``solver`` (weights, optimisers, step) and the random streams are left as they were."""
    trial = copy.deepcopy(solver)
    device = x.device
    dtypes = {"fp32": None, "bf16": torch.bfloat16}

    def per_step(dtype: torch.dtype | None, steps: int) -> float:
        trial.autocast_dtype = dtype
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            trial.train_step(lambda: x, lambda: y)
        synchronize(device)
        return (time.perf_counter() - start) / steps

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for dtype in dtypes.values():  # first calls: optimiser states, kernel choice
            per_step(dtype, 1)
        timed = {name: [per_step(dtype, 1)] for name, dtype in dtypes.items()}
        pair = timed["fp32"][0] + timed["bf16"][0]
        steps = max(1, int(seconds / (rounds * pair)))
        for _ in range(min(rounds, int(seconds / (steps * pair)))):
            for name, dtype in dtypes.items():
                timed[name].append(per_step(dtype, steps))
    return timed


def _trial_batch(samples: Tensor, n: int, device: torch.device, channels_last: bool) -> Tensor:
    """``n`` rows of ``samples`` (cycled when it has fewer) on ``device``, image batches in
    the networks' memory layout (as the trainer's batches)."""
    batch = samples[torch.arange(n) % len(samples)]
    if channels_last and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch.to(device)


def resolve_precision(precision: str, solver: NeuralOT, x: Tensor, y: Tensor, *,
                      batch_size: int, channels_last: bool = False,
                      ranks: Ranks | None = None) -> PrecisionChoice:
    """The precision of a run (see the module's notes): ``fp32`` and ``bf16`` as asked;
    ``auto`` float32 on a device without native bf16 or for a run (``solver.config.steps``)
    shorter than :data:`MEASURED_STEPS`, else measured by :func:`time_precisions`
    on ``batch_size`` rows of the source and target samples ``x`` and ``y``: bf16 when a
    float32 step took at least :data:`BF16_MARGIN` times as long in every paired timing. Under
    torchrun the speed-up and the timings are averaged over the processes (``ranks``), so that
    every process chooses alike."""
    check_precision(precision)
    if precision != "auto":
        return PrecisionChoice(precision, precision)
    device = next(solver.map.parameters()).device
    if not native_bf16(device):
        return PrecisionChoice("auto", "fp32", reason="no native bf16 here")
    if solver.config.steps < MEASURED_STEPS:
        return PrecisionChoice("auto", "fp32", reason=f"a run of under {MEASURED_STEPS} steps "
                                                      "is not measured")
    x, y = (_trial_batch(t, batch_size, device, channels_last) for t in (x, y))
    timed = time_precisions(solver, x, y)
    measured = {"fp32": min(timed["fp32"]), "bf16": min(timed["bf16"]),
                "speedup": min(f / b for f, b in zip(timed["fp32"], timed["bf16"]))}
    if ranks is not None and ranks.distributed:
        mean = mean_over_ranks({k: torch.tensor(v) for k, v in measured.items()}, ranks, device)
        measured = {k: float(v) for k, v in mean.items()}
    speedup = measured.pop("speedup")
    return PrecisionChoice("auto", "bf16" if speedup >= BF16_MARGIN else "fp32", measured,
                           speedup)


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
