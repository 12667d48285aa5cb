"""Exceptions raised by otmap. Every message names the problem and the fix."""

from __future__ import annotations


class OTMapError(Exception):
    """Base class of all otmap errors."""


class InputError(OTMapError, ValueError):
    """Bad user input: shapes, dtypes, non-finite samples, unknown names or keys."""


class CheckpointError(OTMapError):
    """A checkpoint that is missing, corrupted, or was not written by otmap."""


class TrainingDivergedError(OTMapError, FloatingPointError):
    """Losses became NaN or Inf during training; the last good checkpoint is kept."""


class QualityWarning(RuntimeWarning):
    """A run that went wrong without an error (divergence, rollbacks, a map worse than the
    linear one, a runaway potential, failed held-out checks); otmap also prints each as
    ``otmap: warning: ...``, so the command line shows only that line."""


class TrainingInterrupted(OTMapError):
    """SIGTERM or SIGINT stopped training after the current step; a checkpoint was written
    (with a run folder) and ``--resume`` / ``resume=True`` continues exactly.

    ``exit_code`` is ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM), the code
    ``otmap train`` exits with; ``result`` is the map at the step it stopped."""

    def __init__(self, message: str, signal_number: int, result: object = None) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
        self.result = result
