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
