"""The runtime of one training run: its seed, its device and torchrun's process group, entered
and left by ``otmap.fit`` itself (a script that calls ``fit`` under torchrun needs no setup or
teardown of its own)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from otmap.train import distributed
from otmap.train.distributed import Ranks


class Runtime:
    """``with Runtime(seed, device) as runtime:`` seeds torch, picks the device (``cuda:LOCAL_RANK``
    under torchrun) and joins torchrun's process group when there is one; leaving it leaves the
    group if it was joined here (after every rank arrives; at once after an error). A process
    group the caller had already joined is left to the caller.

    Attributes (inside the block): ``ranks`` (:class:`~otmap.train.distributed.Ranks`) and
    ``device``."""

    def __init__(self, seed: int, device: str | torch.device = "auto") -> None:
        self.seed, self.requested_device = seed, device
        self.ranks: Ranks = Ranks.from_env()
        self.device = torch.device("cpu")
        self._joined = False

    def __enter__(self) -> Runtime:
        torch.manual_seed(self.seed)
        joined_before = dist.is_available() and dist.is_initialized()
        self.ranks, self.device = distributed.setup(self.requested_device)
        self._joined = not joined_before and dist.is_available() and dist.is_initialized()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if not self._joined:
            return
        self._joined = False
        if kind is None:
            distributed.shutdown()
        elif dist.is_initialized():  # other ranks may be gone: no barrier
            dist.destroy_process_group()
