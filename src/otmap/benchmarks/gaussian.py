"""Gaussian ground-truth OT pairs, the closed-form Gaussian (Bures) map, and the pair base class.

For N(m_s, S_s) -> N(m_t, S_t) the quadratic-cost OT map is T(x) = A x + b with
A = S_s^{-1/2} (S_s^{1/2} S_t S_s^{1/2})^{1/2} S_s^{-1/2} (symmetric positive definite) and
b = m_t - A m_s. Tensors use the row convention T(x) = x @ A.T + b for x of shape [n, d].
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from otmap.errors import InputError
from otmap.metrics.vectors import cos, l2_uvp

__all__ = [
    "BenchmarkPair",
    "BuresMap",
    "GaussianPair",
    "GaussianSampler",
    "PushforwardSampler",
    "VectorDistribution",
    "gaussian_ot_map",
]

MapFn = Callable[[Tensor], Tensor]


def _check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise InputError(f"dim must be a positive int, got {dim!r}.")
    return dim


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"the number of samples n must be a positive int, got {n!r}.")
    return n


def _sym_sqrt(matrix: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """(M^{1/2}, M^{-1/2}) of a symmetric positive definite [d, d] matrix via eigh."""
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    if not bool((eigenvalues > 0).all()):
        raise InputError(
            f"{name} must be positive definite, smallest eigenvalue is "
            f"{eigenvalues.min().item():.3g}; add a small ridge eps * I."
        )
    root = eigenvalues.sqrt()
    return (vectors * root) @ vectors.T, (vectors / root) @ vectors.T


def gaussian_ot_map(
    mean_s: Tensor, cov_s: Tensor, mean_t: Tensor, cov_t: Tensor
) -> tuple[Tensor, Tensor]:
    """OT map between N(mean_s, cov_s) and N(mean_t, cov_t): (A [d, d], b [d]).

    T(x) = x @ A.T + b, A = S_s^{-1/2} (S_s^{1/2} S_t S_s^{1/2})^{1/2} S_s^{-1/2}, b = m_t - A m_s.
    Computed in float64; returned in the promoted dtype of the inputs, on mean_s's device.
    """
    inputs = {"mean_s": mean_s, "cov_s": cov_s, "mean_t": mean_t, "cov_t": cov_t}
    for name, value in inputs.items():
        if not isinstance(value, Tensor) or not bool(torch.isfinite(value).all()):
            raise InputError(f"{name} must be a finite torch.Tensor; convert or fix it.")
    d = mean_s.shape[-1] if mean_s.ndim else 0
    for name, value in inputs.items():
        expected = (d,) if name.startswith("mean") else (d, d)
        if tuple(value.shape) != expected:
            raise InputError(
                f"{name} must have shape {list(expected)} (means [d], covariances [d, d]), "
                f"got {list(value.shape)}."
            )
    dtype = torch.promote_types(torch.promote_types(mean_s.dtype, cov_s.dtype), cov_t.dtype)
    ms, mt = mean_s.double(), mean_t.to(mean_s.device).double()
    covs = []
    for name, cov in (("cov_s", cov_s), ("cov_t", cov_t)):
        cov = cov.to(mean_s.device).double()
        if not torch.allclose(cov, cov.T, rtol=1e-5, atol=1e-8 * cov.abs().max().item()):
            raise InputError(f"{name} must be symmetric; pass (cov + cov.T) / 2.")
        covs.append((cov + cov.T) / 2)
    cs, ct = covs
    if torch.linalg.eigvalsh(ct).min().item() <= 0:
        raise InputError("cov_t must be positive definite; add a small ridge eps * I.")
    root_s, inv_root_s = _sym_sqrt(cs, "cov_s")
    middle, _ = _sym_sqrt(root_s @ ct @ root_s, "cov_s^1/2 cov_t cov_s^1/2")
    a = inv_root_s @ middle @ inv_root_s
    a = (a + a.T) / 2
    return a.to(dtype), (mt - a @ ms).to(dtype)


def random_spd(dim: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """Random SPD [dim, dim] float64 matrix Q diag(lambda) Q^T, lambda ~ U[low, high], Q Haar."""
    gauss = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    q = q * torch.sign(torch.diagonal(r))
    eigenvalues = low + (high - low) * torch.rand(dim, generator=generator, dtype=torch.float64)
    return (q * eigenvalues) @ q.T


class VectorDistribution(abc.ABC):
    """A distribution on R^dim that draws float32 samples [n, dim] (an
    :class:`otmap.data.Sampler`, with a ``generator`` option and its dimension)."""

    def __init__(self, dim: int) -> None:
        self.dim = _check_dim(dim)
        self.shape = (dim,)

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw [n, dim] float32 samples (torch global RNG unless ``generator`` is given)."""


class GaussianSampler(VectorDistribution):
    """N(mean, cov): x = mean + z @ L.T with z ~ N(0, I) and L the Cholesky factor of cov."""

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        super().__init__(mean.shape[0])
        self.mean = mean.float()
        self.chol = torch.linalg.cholesky(cov.double()).float()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(_check_n(n), self.dim, generator=generator)
        return self.mean + z @ self.chol.T


class PushforwardSampler(VectorDistribution):
    """T#mu: samples ``map_fn(base.sample(n))`` of fresh base samples."""

    def __init__(self, base: VectorDistribution, map_fn: MapFn) -> None:
        super().__init__(base.dim)
        self.base = base
        self.map_fn = map_fn

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.map_fn(self.base.sample(n, generator)).float()


class BuresMap(nn.Module):
    """Linear (Bures) OT map T(x) = x @ A.T + b between Gaussians; x is [n, d]."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        super().__init__()
        self.register_buffer("A", a)
        self.register_buffer("b", b)

    @classmethod
    def fit(cls, x: Tensor, y: Tensor, ridge: float = 1e-6) -> BuresMap:
        """Map between the moment-matched Gaussians of samples x [n, d] and y [m, d].

        Covariances get ``ridge * tr(S) / d * I`` added so that n <= d still works.
        """
        moments = []
        for name, s in (("x", x), ("y", y)):
            if not isinstance(s, Tensor) or s.ndim != 2 or s.shape[0] < 2:
                raise InputError(f"{name} must be a [n, d] tensor with n >= 2 samples.")
            if not bool(torch.isfinite(s).all()):
                raise InputError(f"{name} contains NaN or Inf values; remove those samples.")
            s64 = s.double()
            mean = s64.mean(dim=0)
            centred = s64 - mean
            cov = centred.T @ centred / s.shape[0]
            eye = torch.eye(s.shape[1], dtype=cov.dtype, device=cov.device)
            cov = cov + ridge * cov.trace() / s.shape[1] * eye
            moments += [mean, cov]
        if x.shape[1] != y.shape[1]:
            raise InputError(
                f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}."
            )
        a, b = gaussian_ot_map(*moments)
        return cls(a.to(x.dtype), b.to(x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.A.shape[0]:
            raise InputError(
                f"BuresMap expects inputs [n, {self.A.shape[0]}], got {list(x.shape)}."
            )
        return x @ self.A.to(x).T + self.b.to(x)


def _map_device(map_fn: MapFn) -> torch.device | None:
    """Where to run ``map_fn``: its ``.device``, else its first parameter/buffer's device."""
    device = getattr(map_fn, "device", None)
    if device is None and isinstance(map_fn, nn.Module):
        first = next(itertools.chain(map_fn.parameters(), map_fn.buffers()), None)
        device = None if first is None else first.device
    return device


class BenchmarkPair(abc.ABC):
    """Source/target samplers with a known OT map ``true_map`` (quadratic cost).

    Attributes: ``source``, ``target`` (samplers), ``dim``, ``shape = (dim,)``,
    ``target_variance`` = Var(nu) = tr Cov(nu), the forward L2-UVP normaliser, and
    ``source_variance`` = Var(mu), the inverse direction's.
    """

    def __init__(self, source: VectorDistribution, target: VectorDistribution,
                 target_variance: float, source_variance: float | None = None) -> None:
        self.source = source
        self.target = target
        self.dim = source.dim
        self.shape = source.shape
        self.target_variance = float(target_variance)
        self.source_variance = None if source_variance is None else float(source_variance)

    @abc.abstractmethod
    def true_map(self, x: Tensor) -> Tensor:
        """The OT map T*(x) for x [n, dim]; returns [n, dim] in x's dtype and device."""

    def _scores(self, x: Tensor, truth: Tensor, map_fn: MapFn, batch_size: int,
                variance: float | None = None) -> dict:
        """L2-UVP (normalised by ``variance``, default Var(nu)) and cos of ``map_fn(x)`` against
        ``truth``; cos measures displacements from ``x``."""
        device = _map_device(map_fn)
        outputs = []
        with torch.no_grad():
            for batch in x.split(batch_size):
                out = map_fn(batch if device is None else batch.to(device))
                outputs.append(torch.as_tensor(out).to(x.device))
        predicted = torch.cat(outputs)
        if predicted.shape != x.shape:
            raise InputError(
                f"map_fn must return [n, {self.dim}] for inputs [n, {self.dim}], got "
                f"{list(predicted.shape)}."
            )
        return {
            "l2_uvp": l2_uvp(predicted, truth,
                             self.target_variance if variance is None else variance),
            "cos": cos(x, predicted, truth),
        }

    def score(
        self,
        map_fn: MapFn,
        n: int = 4096,
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
    ) -> dict:
        """{"l2_uvp", "cos"} of ``map_fn`` against ``true_map`` on n fresh source samples.

        Runs under torch.no_grad in batches; inputs go to ``map_fn.device`` if it has one, else
        to the device of an nn.Module's parameters, else stay on the CPU.
        """
        x = self.source.sample(n, generator)
        return self._scores(x, self.true_map(x), map_fn, batch_size)

    def score_inverse(
        self,
        map_fn: MapFn,
        n: int = 4096,
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
    ) -> dict:
        """{"l2_uvp", "cos"} of an inverse map ``map_fn(y) ~ x`` on y = T*(x), x ~ mu:
        ``100 E|S(y) - x|^2 / Var(mu)`` and the cosine of the displacements from y (the
        W2 benchmark's inverse scores)."""
        if self.source_variance is None:
            raise InputError(f"{type(self).__name__} has no source_variance: pass it to "
                             "BenchmarkPair.__init__ to score inverse maps")
        x = self.source.sample(n, generator)
        return self._scores(self.true_map(x), x, map_fn, batch_size, self.source_variance)

    def baseline_scores(
        self, n_fit: int = 20000, n: int = 4096, generator: torch.Generator | None = None
    ) -> dict:
        """Scores of the W2-benchmark baselines on n common source samples.

        "bures": BuresMap fit on n_fit source and n_fit target samples; "identity": x -> x
        (L2-UVP = 100 E|T*(x) - x|^2 / Var(nu), cos 0); "mean": x -> empirical target mean
        (L2-UVP ~ 100).
        """
        xs = self.source.sample(_check_n(n_fit), generator)
        ys = self.target.sample(n_fit, generator)
        bures = BuresMap.fit(xs, ys)
        mean = ys.mean(dim=0)
        x = self.source.sample(n, generator)
        truth = self.true_map(x)
        maps: dict[str, MapFn] = {
            "bures": bures,
            "identity": lambda z: z,
            "mean": lambda z: mean.expand_as(z),
        }
        return {name: self._scores(x, truth, fn, 4096) for name, fn in maps.items()}


class GaussianPair(BenchmarkPair):
    """N(m_s, S_s) -> N(m_t, S_t) with random means m ~ N(0, I) and covariances with Haar
    eigenvectors and eigenvalues ~ U[0.5, 2]; T* is the affine Gaussian OT map.

    All parameters come from ``torch.Generator().manual_seed(seed)``. The target sampler pushes
    fresh source samples through T*, which is exact.
    """

    def __init__(self, dim: int, seed: int = 0) -> None:
        _check_dim(dim)
        generator = torch.Generator().manual_seed(seed)
        self.mean_s = torch.randn(dim, generator=generator, dtype=torch.float64)
        self.cov_s = random_spd(dim, 0.5, 2.0, generator)
        self.mean_t = torch.randn(dim, generator=generator, dtype=torch.float64)
        self.cov_t = random_spd(dim, 0.5, 2.0, generator)
        self.A, self.b = gaussian_ot_map(self.mean_s, self.cov_s, self.mean_t, self.cov_t)
        source = GaussianSampler(self.mean_s, self.cov_s)
        target = PushforwardSampler(source, self.true_map)
        super().__init__(source, target, self.cov_t.trace().item(), self.cov_s.trace().item())

    def true_map(self, x: Tensor) -> Tensor:
        """T*(x) = x @ A.T + b, computed in float64 and returned in x's dtype and device."""
        a, b = self.A.to(x.device), self.b.to(x.device)
        return (x.double() @ a.T + b).to(x.dtype)
