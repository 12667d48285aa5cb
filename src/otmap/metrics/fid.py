"""Fréchet distance between Gaussian fits of image features (FID).

For feature means mu_i [d] and covariances S_i [d, d],

    FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}),

computed in float64, with Tr (S_1 S_2)^{1/2} = sum_k sqrt(lambda_k) over the eigenvalues of the
symmetric PSD matrix S_1^{1/2} S_2 S_1^{1/2} (clamped at 0), which is stable for singular S_i.
Features come from any extractor of :mod:`otmap.metrics.features`; Inception features give the
standard FID, :class:`~otmap.metrics.features.DigitsFeatures` a cheap digits-specific one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from otmap.errors import InputError
from otmap.metrics.features import FeatureExtractor, default_cache_dir
from otmap.utils.files import atomic_write

__all__ = ["FeatureStats", "cached_stats", "compute_stats", "fid", "frechet_distance"]

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*")


def _float64(name: str, x: object, ndim: int) -> np.ndarray:
    """``x`` (array or tensor) as a finite float64 array with ``ndim`` dimensions."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimension(s), got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or Inf values.")
    return a


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clamped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: object, sigma1: object, mu2: object, sigma2: object) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) for mu [d], S [d, d], in float64.

    The squared 2-Wasserstein distance between N(mu1, S1) and N(mu2, S2); clamped at 0.
    """
    m1, m2 = _float64("mu1", mu1, 1), _float64("mu2", mu2, 1)
    s1, s2 = _float64("sigma1", sigma1, 2), _float64("sigma2", sigma2, 2)
    d = m1.shape[0]
    if m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise InputError(
            f"frechet_distance needs mu [d] and sigma [d, d] of one width d, got mu1 {m1.shape}, "
            f"sigma1 {s1.shape}, mu2 {m2.shape}, sigma2 {s2.shape}; use the same extractor."
        )
    r1 = _psd_sqrt(s1)
    cross = r1 @ s2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((cross + cross.T) / 2), 0.0, None)).sum()
    diff = m1 - m2
    return max(0.0, float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt))


@dataclass
class FeatureStats:
    """Gaussian fit of n features: mean ``mu`` [d], unbiased covariance ``sigma`` [d, d]
    (float64), and the name of the extractor that produced them ("" when unknown)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    extractor: str = ""

    @classmethod
    def from_features(cls, feats: Tensor | np.ndarray, extractor: str = "") -> FeatureStats:
        """Mean and covariance (divided by n - 1) of features [n, d], n >= 2."""
        f = _float64("features", feats, 2)
        if f.shape[0] < 2:
            raise InputError(f"feature statistics need at least 2 samples, got {f.shape[0]}.")
        return cls(
            f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], -1), f.shape[0], extractor
        )

    def save(self, path: str | Path) -> Path:
        """Write ``mu``, ``sigma``, ``n`` and ``extractor`` to an .npz file atomically."""
        path = Path(path)
        arrays = {"mu": self.mu, "sigma": self.sigma, "n": np.int64(self.n),
                  "extractor": np.str_(self.extractor)}
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        """Read stats written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(z["mu"], z["sigma"], int(z["n"]), str(z["extractor"]))

    def fid(self, other: FeatureStats) -> float:
        """Fréchet distance between these stats and ``other`` (same extractor required)."""
        if self.extractor and other.extractor and self.extractor != other.extractor:
            raise InputError(
                f"cannot compare stats of extractor {self.extractor!r} with stats of "
                f"{other.extractor!r}; compute both with the same extractor."
            )
        return frechet_distance(self.mu, self.sigma, other.mu, other.sigma)


def compute_stats(
    images: Tensor, extractor: FeatureExtractor, batch_size: int = 256
) -> FeatureStats:
    """Feature stats of images [n, c, h, w] (n >= 2), run in eval mode under ``no_grad`` in
    batches on the extractor's device; the extractor's train/eval mode is restored after."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"images must be a tensor of shape [n, c, h, w], got {shape}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}.")
    was_training = extractor.training
    extractor.eval()
    try:
        with torch.no_grad():
            feats = [extractor(batch).double().cpu() for batch in images.split(batch_size)]
    finally:
        extractor.train(was_training)
    return FeatureStats.from_features(torch.cat(feats), extractor=extractor.name)


def fid(
    a: Tensor | FeatureStats,
    b: Tensor | FeatureStats,
    extractor: FeatureExtractor,
    batch_size: int = 256,
) -> float:
    """FID between two image sets [n, c, h, w] in [-1, 1] or their precomputed stats."""

    def stats(x: Tensor | FeatureStats) -> FeatureStats:
        return x if isinstance(x, FeatureStats) else compute_stats(x, extractor, batch_size)

    return stats(a).fid(stats(b))


def cached_stats(
    key: str,
    images_fn: Callable[[], Tensor],
    extractor: FeatureExtractor,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
) -> FeatureStats:
    """Stats of ``images_fn()`` cached in ``<cache_dir>/<key>-<extractor.name>.npz``.

    ``images_fn`` is called only when the file is missing; the file is then written
    atomically. ``cache_dir`` defaults to ``$OTMAP_CACHE`` or ``~/.cache/otmap``.
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InputError(
            f"stats cache key must be a file-name-safe string (letters, digits, _ . = + -), "
            f"got {key!r}."
        )
    path = Path(cache_dir or default_cache_dir()) / f"{key}-{extractor.name}.npz"
    if path.exists():
        return FeatureStats.load(path)
    stats = compute_stats(images_fn(), extractor, batch_size)
    stats.save(path)
    return stats
