"""Atomic file writes: every file otmap writes (checkpoints, models, FID statistics, plots,
applied images) goes through :func:`atomic_write`, so a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from otmap.errors import OTMapError


def write_error(path: Path, err: BaseException) -> OTMapError:
    """The default error of a failed write: names the path, the cause and the fix."""
    return OTMapError(f"could not write {path} ({type(err).__name__}: {err}); any previous "
                      f"{path.name} is kept. Free disk space on that filesystem or choose "
                      "another folder")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, sync: bool = False,
                 error: Callable[[Path, BaseException], Exception] = write_error) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``sync`` flushes the file to disk before the rename (checkpoints). A failed write (full
    disk, no permission) removes the temporary file, leaves any previous ``path`` as it was and
    raises ``error(path, cause)``; other exceptions (a bug, Ctrl-C) propagate after cleanup."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise error(path, err) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; written files are the user's to share
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError | RuntimeError):
            raise error(path, err) from err
        raise
    return path
