"""Apply a trained image -> image map to every image file under a folder (``otmap apply``).

>>> result = otmap.load("runs/horse2zebra")
>>> summary = apply_folder(result, "photos", "mapped")      # photos/a/b.jpg -> mapped/a/b.png

Files with the suffixes in :data:`~otmap.data.images.IMAGE_EXTENSIONS` (case-insensitive) are
found recursively under the input folder and processed in sorted order. Each file, of any size,
is converted to the model's channels (grayscale ``L`` for 1, ``RGB`` for 3; palette images are
expanded first, alpha is dropped), resized to the model's ``h x w`` with Pillow's bicubic filter
(the aspect ratio is NOT preserved), scaled to ``[-1, 1]`` (``v / 127.5 - 1``), batched and
mapped. **Outputs are at the model's resolution**, not the input's: the map only knows its
training size.

Outputs are PNG files at the same relative path under the output folder with the suffix
changed to ``.png`` (``a/b.jpg`` -> ``a/b.png``); values go back to ``uint8`` as
``round((y + 1) * 127.5)`` clamped to ``0..255``, 1-channel outputs as ``L`` and 3-channel as
``RGB``. For a stochastic map, ``samples=K > 1`` writes ``K`` draws ``b_s0.png .. b_s{K-1}.png``
per input; without ``samples`` one draw is written as ``b.png``. Each PNG is written to a
temporary file in its folder and renamed into place, so an interrupted run never leaves a
truncated PNG; existing outputs are overwritten.

Unreadable or corrupt files: with ``on_error="skip"`` (default) each is reported on stderr by
name and skipped, and the summary lists them all; with ``on_error="fail"`` the first one raises
:class:`~otmap.errors.InputError` naming it and nothing further is written. Outputs of batches
already written stay on disk (files read before the bad one in the same, unfinished batch are
not written).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from otmap.data.images import IMAGE_EXTENSIONS, read_image
from otmap.errors import InputError, OTMapError
from otmap.utils.checks import check_choice, check_positive_int
from otmap.utils.files import atomic_write

__all__ = ["apply_folder", "ON_ERROR"]

#: accepted values of ``on_error``
ON_ERROR: tuple[str, ...] = ("skip", "fail")

_MODES = {1: "L", 3: "RGB"}


# --------------------------------------------------------------------------------------------
# checks


def _image_shape(shape: Sequence[int], which: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[0] not in _MODES:
        raise InputError(
            f"apply needs an image -> image map, with {which} shape (c, h, w) and c = 1 "
            f"(grayscale) or 3 (RGB); this map's {which} shape is {shape}. Apply maps between "
            "vectors with result.transport(x); draw from a generative map with `otmap sample`"
        )
    return shape  # type: ignore[return-value]


def _find_images(root: Path, skip_dir: Path | None) -> list[Path]:
    """Image files under ``root`` (recursively), sorted by relative path; ``skip_dir`` (the
    output folder when it lies inside the input folder) is not searched."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip_dir is not None:
            dirnames[:] = [d for d in dirnames if (here / d).resolve() != skip_dir]
        files.extend(here / f for f in filenames
                     if Path(f).suffix.lower() in IMAGE_EXTENSIONS and (here / f).is_file())
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _output_names(rel: Path, samples: int | None) -> list[Path]:
    if samples is None or samples == 1:
        return [rel.with_suffix(".png")]
    return [rel.with_name(f"{rel.stem}_s{i}.png") for i in range(samples)]


# --------------------------------------------------------------------------------------------
# reading and writing


def to_uint8(y: Tensor) -> np.ndarray:
    """``[c, h, w]`` in ``[-1, 1]`` -> uint8 ``[h, w]`` (c = 1) or ``[h, w, 3]`` (c = 3), with
    ``round((y + 1) * 127.5)`` clamped to ``0..255``."""
    pixels = ((y.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    pixels = pixels.permute(1, 2, 0).numpy()
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def _write_png(pixels: np.ndarray, path: Path) -> None:
    """Save ``pixels`` as a PNG at ``path`` (atomically)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels), mode="L" if pixels.ndim == 2 else "RGB")
    atomic_write(path, lambda fh: image.save(fh, format="PNG"))


# --------------------------------------------------------------------------------------------
# the API


def apply_folder(result: Any, input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 samples: int | None = None, batch_size: int = 64, on_error: str = "skip",
                 progress: bool = True) -> dict:
    """Map every image file under ``input_dir`` with ``result`` (a
    :class:`~otmap.model.result.TransportResult` of an image -> image map) and write PNGs under
    ``output_dir``, mirroring the relative paths (see the module docs for the conversions).

    ``samples``: for a stochastic map, the number of draws per input (``K > 1`` writes
    ``name_s0.png .. name_s{K-1}.png``); giving it for a deterministic map is an error.
    ``batch_size``: images mapped at once. ``on_error``: ``"skip"`` unreadable files (each
    reported on stderr) or ``"fail"`` on the first one. ``progress``: a tqdm bar over the files
    on stderr (shown only when stderr is a terminal).

    Noise of a stochastic map comes from torch's global RNG: call ``torch.manual_seed`` first
    for reproducible outputs.

    Returns ``{"input_dir", "output_dir", "n_files", "n_images", "n_written", "samples",
    "size", "skipped", "skip_reasons"}``: ``n_files`` image files found, ``n_images`` of them
    mapped, ``n_written`` PNG files written, ``size`` ``[h, w]`` of the outputs, ``skipped``
    the paths of unreadable files and ``skip_reasons`` ``{path: reason}``.

    Raises :class:`~otmap.errors.InputError` for a map that is not image -> image, an input
    folder that is missing or holds no image files, an output folder equal to the input
    folder, outputs that would collide (``a.jpg`` and ``a.png`` side by side) or overwrite an
    input file, and (with ``on_error="fail"``) an unreadable file.
    """
    from tqdm.auto import tqdm

    c, h, w = _image_shape(result.source_shape, "source")
    c_out, h_out, w_out = _image_shape(result.target_shape, "target")
    stochastic = bool(getattr(result.map, "stochastic", False))
    if samples is not None:
        samples = check_positive_int("samples", samples,
                                     "pass the draws per input of a stochastic map (--samples K), "
                                     "or leave it out for one")
        if not stochastic:
            raise InputError(
                f"samples={samples} was given but the map is deterministic (one output per "
                "input): leave samples out; only stochastic maps give several draws per input"
            )
    batch_size = check_positive_int("batch_size", batch_size,
                                    "pass the images mapped at once (--batch-size), e.g. 64")
    check_choice("on_error", on_error, ON_ERROR)

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    in_real, out_real = input_dir.resolve(), output_dir.resolve()
    if out_real == in_real:
        raise InputError(
            f"the output folder {output_dir} is the input folder: pass a different --output, "
            "so the outputs neither overwrite nor mix with the inputs"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"output {output_dir} exists and is not a folder")
    # an output folder inside the input folder is left out of the search, so a second run does
    # not map the first run's outputs
    skip_dir = out_real if in_real in out_real.parents else None
    files = _find_images(input_dir, skip_dir)
    if not files:
        raise InputError(
            f"no image files with extensions {', '.join(IMAGE_EXTENSIONS)} (any case) found "
            f"under {input_dir} (searched recursively)"
        )

    # plan every output first: refuse collisions and overwriting inputs before writing anything
    plan: list[tuple[Path, list[Path]]] = []
    owner: dict[Path, Path] = {}
    inputs = {p.resolve() for p in files}
    for path in files:
        outs = [output_dir / rel for rel in _output_names(path.relative_to(input_dir), samples)]
        for out in outs:
            if out in owner:
                raise InputError(
                    f"{owner[out]} and {path} would both be written to {out}: rename one of "
                    "them (outputs keep the relative path with the suffix changed to .png)"
                )
            owner[out] = path
            if out.resolve() in inputs:
                raise InputError(f"the output for {path} would overwrite the input file {out}:"
                                 " pass an output folder outside the input folder")
        plan.append((path, outs))

    mode = _MODES[c]
    skipped: list[str] = []
    reasons: dict[str, str] = {}
    n_images = n_written = 0
    bar = tqdm(total=len(plan), unit="file", desc="otmap apply",
               disable=None if progress else True, file=sys.stderr)

    def flush(batch: list[tuple[np.ndarray, list[Path], Path]]) -> None:
        nonlocal n_images, n_written
        if batch:
            pixels = torch.from_numpy(np.stack([b[0] for b in batch]))
            x = pixels.view(len(batch), h, w, c).permute(0, 3, 1, 2)
            x = x.to(torch.float32).div_(127.5).sub_(1.0)
            k = len(batch[0][1])
            ys = result.transport(x, num_samples=k, batch_size=batch_size)
            if tuple(ys.shape[2:]) != (c_out, h_out, w_out):
                raise InputError(
                    f"the map returned outputs of shape {tuple(ys.shape[2:])}, not its target "
                    f"shape {(c_out, h_out, w_out)}"
                )
            for (_, outs, src), y in zip(batch, ys):
                if not torch.isfinite(y).all():
                    raise OTMapError(f"the map produced non-finite values (NaN or Inf) for "
                                     f"{src}: the model is broken; nothing was written for it")
                for out, yk in zip(outs, y):
                    _write_png(to_uint8(yk), out)
                    n_written += 1
            n_images += len(batch)
            batch.clear()

    try:
        batch: list[tuple[np.ndarray, list[Path], Path]] = []
        for path, outs in plan:
            bar.update(1)
            try:
                pixels = read_image(path, mode, h, w)
            except Exception as exc:  # Pillow raises many types for corrupt data
                reason = f"{type(exc).__name__}: {exc}"
                if on_error == "fail":
                    raise InputError(
                        f"cannot read image file {path} ({reason}): remove or repair it, or "
                        "pass --on-error skip (on_error='skip') to skip unreadable files"
                    ) from None
                skipped.append(str(path))
                reasons[str(path)] = reason
                tqdm.write(f"otmap: skipping unreadable image {path} ({reason})",
                           file=sys.stderr)
                continue
            batch.append((pixels, outs, path))
            if len(batch) == batch_size:
                flush(batch)
        flush(batch)
    finally:
        bar.close()
    return {
        "input_dir": str(input_dir), "output_dir": str(output_dir), "n_files": len(plan),
        "n_images": n_images, "n_written": n_written, "samples": samples,
        "size": [h_out, w_out], "skipped": skipped, "skip_reasons": reasons,
    }
