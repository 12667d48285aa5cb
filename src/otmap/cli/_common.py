"""What several commands share: the one-process check of the commands torchrun does not run."""

from __future__ import annotations

from otmap.errors import OTMapError


def single_process(command: str) -> None:
    """Refuse to run ``otmap COMMAND`` under torchrun (only ``otmap train`` runs there)."""
    from otmap.train.distributed import Ranks

    if Ranks.from_env().distributed:
        raise OTMapError(f"`otmap {command}` runs in one process; only `otmap train` runs under "
                         "torchrun")
