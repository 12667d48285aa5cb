"""Devices and multi-process data-parallel training, in one place.

Under ``torchrun --nproc_per_node N -m otmap train ...`` every process runs the same training
with its own data and noise streams; the map T and the potential f are wrapped *separately* in
``DistributedDataParallel``, so each update averages only the gradients of the player it
updates (the other one is frozen in that step). Only rank 0 evaluates, logs, writes
checkpoints and plots. ``batch_size`` is per process: N processes see N x batch_size samples
per update.

Streams: every rank's torch RNG is reseeded from ``(seed, rank, step)`` when training starts
or resumes and after every checkpoint, so a run resumes exactly with the same number of
processes, and a checkpoint written by N processes resumes with any other number.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from otmap.errors import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' was asked for but CUDA is not available; use device='auto'")
    return device


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: ``rank`` of ``world_size`` processes (``local_rank`` on its
    machine). A plain ``python`` run is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Ranks:
        """Read torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)))


def setup(device: str | torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU) and pick this
    process's device (``cuda:LOCAL_RANK`` on a multi-GPU machine)."""
    ranks = Ranks.from_env()
    dev = resolve_device(device)
    if not ranks.distributed:
        return ranks, dev
    if dev.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise InputError(f"process {ranks.rank} has local rank {ranks.local_rank} but this "
                             f"machine has {torch.cuda.device_count()} GPU(s): start at most one "
                             "process per GPU (torchrun --nproc_per_node)")
        dev = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dist.get_world_size() != ranks.world_size:
        raise InputError(f"WORLD_SIZE={ranks.world_size} but the process group has "
                         f"{dist.get_world_size()} processes")
    return ranks, dev


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around one player. Buffers (fixed input scalings) are
    synchronised from rank 0 once, not re-broadcast at each forward."""
    ids = [device.index] if device.type == "cuda" else None
    # recent torch renamed broadcast_buffers (deprecated there) to forward_sync_buffers
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    option = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=ids, **option)


def rank_seed(seed: int, rank: int, step: int, rollbacks: int = 0) -> int:
    """A seed for rank ``rank``'s stream from ``step`` on, independent across ranks (and, after
    a rollback, of the streams before it)."""
    entropy = [seed, rank, step] + ([rollbacks] if rollbacks else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def mean_over_ranks(stats: dict[str, Tensor], ranks: Ranks,
                    device: torch.device) -> dict[str, Tensor]:
    """Average scalar statistics over the processes (one all-reduce on ``device``); unchanged
    for one process."""
    if not ranks.distributed or not stats:
        return stats
    values = torch.stack([v.detach().float().reshape(()).to(device) for v in stats.values()])
    dist.all_reduce(values)
    return dict(zip(stats, values / ranks.world_size))


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (after every rank has arrived), if one was joined."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that runs ``python -m otmap ARGV`` in ``nproc`` local processes under
    torchrun (``torch.distributed.run``; it gives each process one CPU thread unless
    ``OMP_NUM_THREADS`` is set)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "otmap", *argv]
