"""The continuous Wasserstein-2 benchmark's Mix3toMix10 pairs (Korotin et al., NeurIPS 2021).

Source P: a mixture of 3 equally weighted Gaussians in R^D; the true map is the standardised sum
of the gradients of two published input-convex potentials,

    T*(x) = s * (grad phi_1(x) + grad phi_2(x) - m),

with m the mean and ``s = 1 / sqrt(mean_k Var_k)`` of ``grad phi_1 + grad phi_2`` under P, and
the target is Q = T*#P. Each potential is a dense ICNN read from ``{D}_v1.pt`` / ``{D}_v2.pt``:

    quad_i(x)_j = sum_r (x . A_i[:, r, j])^2 + (W_i x + b_i)_j
    h_0 = quad_0(x),  h_{i+1} = CELU(C_i h_i + quad_{i+1}(x)),  phi(x) = w . h_2 + 1e-2/2 |x|^2.

The files are not shipped with otmap (github.com/iamalexkorotin/Wasserstein2Benchmark,
``benchmarks/Mix3toMix10/``, MIT licence); point ``root=`` or ``$OTMAP_W2B_DIR`` at a folder
holding them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from otmap.benchmarks.brenier import GaussianMixtureSampler
from otmap.benchmarks.gaussian import BenchmarkPair, PushforwardSampler, _check_dim
from otmap.errors import InputError

__all__ = ["DIMS", "PUBLISHED", "DenseICNN", "W2BenchmarkPair", "best_published", "default_root",
           "published_table"]

#: the dimensions with published potentials
DIMS = (2, 4, 8, 16, 32, 64, 128)
#: the environment variable naming the folder with the potentials
ROOT_ENV = "OTMAP_W2B_DIR"
STRONG_CONVEXITY = 1e-2
COMPONENT_STD = 0.4
ESTIMATE_SAMPLES = 2**14
SOURCE_URL = "github.com/iamalexkorotin/Wasserstein2Benchmark (benchmarks/Mix3toMix10/)"

#: forward L2-UVP (%) of the paper's Table 2 for D = 2 ... 128 (None: diverged)
PUBLISHED: dict[str, tuple[float | None, ...]] = {
    "MMv1": (0.2, 1.0, 1.8, 1.4, 6.9, 8.1, 2.2),
    "MM": (0.1, 0.3, 0.9, 2.2, 4.2, 3.2, None),
    "MM:R": (0.1, 0.3, 0.7, 1.9, 2.8, 4.5, None),
    "MMv2:R": (0.1, 0.7, 4.4, 7.7, 5.8, 6.8, 2.1),
    "W2": (0.1, 0.7, 2.6, 3.3, 6.0, 7.2, 2.0),
    "MM-B": (0.1, 0.7, 3.1, 6.4, 12.0, 13.9, 19.0),
    "LS": (5.0, 11.6, 21.5, 31.7, 42.1, 40.1, 46.8),
    "Linear": (14.1, 14.9, 27.3, 41.6, 55.3, 63.9, 63.6),
}


def best_published(dim: int) -> float:
    """The lowest published forward L2-UVP (%) at ``dim`` among the paper's solvers."""
    i = DIMS.index(dim)
    return min(v[i] for name, v in PUBLISHED.items() if v[i] is not None and name != "Linear")


def default_root() -> Path:
    """``$OTMAP_W2B_DIR``, else ``~/.cache/otmap/w2b``."""
    env = os.environ.get(ROOT_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "otmap" / "w2b"


class DenseICNN(nn.Module):
    """The benchmark's input-convex potential ``phi: [n, D] -> [n]`` (module docstring),
    built from a state dict (its layer sizes are read from the tensors)."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__()
        try:
            self.quadratic = nn.ParameterList(
                [nn.Parameter(state[f"quadratic_layers.{i}.quadratic_decomposed"].double(),
                              requires_grad=False) for i in range(3)])
            self.linear = nn.ModuleList()
            for i in range(3):
                w = state[f"quadratic_layers.{i}.weight"].double()
                layer = nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
                layer.weight.data, layer.bias.data = w, state[f"quadratic_layers.{i}.bias"].double()
                self.linear.append(layer)
            self.convex = nn.ParameterList(
                [nn.Parameter(state[f"convex_layers.{i}.weight"].double(), requires_grad=False)
                 for i in range(2)])
            self.final = nn.Parameter(state["final_layer.weight"].double(), requires_grad=False)
        except KeyError as err:
            raise InputError(f"not a W2 benchmark potential: the state dict has no {err}") from None
        self.requires_grad_(False)
        self.dim = self.quadratic[0].shape[0]

    def _quad(self, i: int, x: Tensor) -> Tensor:
        return torch.einsum("nk,krj->nrj", x, self.quadratic[i]).square().sum(1) + self.linear[i](x)

    def forward(self, x: Tensor) -> Tensor:
        h = self._quad(0, x)
        for i in range(2):
            h = F.celu(h @ self.convex[i].T + self._quad(i + 1, x))
        return (h @ self.final.T).squeeze(-1) + 0.5 * STRONG_CONVEXITY * x.square().sum(-1)

    def gradient(self, x: Tensor) -> Tensor:
        """``grad phi(x)`` [n, D] (float64)."""
        with torch.enable_grad():
            x = x.double().detach().requires_grad_(True)
            return torch.autograd.grad(self(x).sum(), x)[0]


def mix3_source(dim: int) -> GaussianMixtureSampler:
    """The benchmark's source: 3 Gaussians whose centres take the values -1, 0, 1 in a random
    order in every coordinate, each with covariance ``0.4^2 M_k M_k^T`` (``M_k`` a normal matrix
    with unit rows), all divided by one constant so that the total variance is about D; drawn
    from ``numpy.random.RandomState(0)`` in that order."""
    rs = np.random.RandomState(0)
    centres = np.zeros((3, dim))
    for d in range(dim):
        centres[:, d] = rs.choice(3, 3, replace=False) - 1.0
    maps = rs.normal(size=(3, dim, dim)).astype(np.float32).astype(np.float64)
    maps /= np.sqrt((maps**2).sum(axis=2, keepdims=True))
    mult = np.sqrt((centres**2).sum(axis=1).mean() + dim * COMPONENT_STD**2) / np.sqrt(dim)
    centres, maps = centres / mult, maps / mult * COMPONENT_STD
    covs = torch.from_numpy(maps @ maps.transpose(0, 2, 1))
    weights = torch.ones(3, dtype=torch.float64)
    return GaussianMixtureSampler(torch.from_numpy(centres), covs, weights)


def _potential_files(dim: int, root: str | Path | None) -> tuple[Path, Path]:
    base = Path(root).expanduser() if root is not None else default_root()
    for folder in (base / "Mix3toMix10", base):
        files = (folder / f"{dim}_v1.pt", folder / f"{dim}_v2.pt")
        if all(f.is_file() for f in files):
            return files
    where = "root=" if root is not None else f"${ROOT_ENV} (or ~/.cache/otmap/w2b)"
    raise InputError(
        f"the W2 benchmark potentials {dim}_v1.pt and {dim}_v2.pt are not in {base} or "
        f"{base / 'Mix3toMix10'}; download benchmarks/Mix3toMix10/ from {SOURCE_URL} and point "
        f"{where} at the folder holding them (otmap bench w2b --root DIR)"
    )


def _read_potential(path: Path) -> DenseICNN:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a foreign or corrupt file
        raise InputError(f"{path} is not a readable W2 benchmark potential ({err})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state dict")
    return DenseICNN(state)


class W2BenchmarkPair(BenchmarkPair):
    """A Mix3toMix10 pair of the continuous W2 benchmark at ``dim`` in {2, 4, ..., 128}.

    ``source``/``target`` are samplers, ``true_map(x)`` is T* (float64 inside), ``score(map_fn)``
    the forward L2-UVP and cos and ``score_inverse(map_fn)`` the inverse direction's (the
    benchmark's reverse pair swaps P and Q). ``shift`` (m), ``scale`` (s) and
    ``target_variance`` are estimated once from 2^14 source samples of a generator seeded with 0.
    """

    def __init__(self, dim: int, root: str | Path | None = None, seed: int = 0) -> None:
        _check_dim(dim)
        if dim not in DIMS:
            raise InputError(f"the W2 benchmark has pairs for dim in {list(DIMS)}, got {dim}")
        self.potentials = [_read_potential(p) for p in _potential_files(dim, root)]
        if any(p.dim != dim for p in self.potentials):
            raise InputError(f"the potentials for dim {dim} are for dim {self.potentials[0].dim}")
        source = mix3_source(dim)
        fixed = torch.Generator().manual_seed(0)
        raw = self._raw_map(source.sample(ESTIMATE_SAMPLES, fixed))
        self.shift = raw.mean(0)
        self.scale = 1.0 / raw.var(0).mean().sqrt()
        target = PushforwardSampler(source, self.true_map)
        variance = self.true_map(source.sample(ESTIMATE_SAMPLES, fixed)).var(0, unbiased=False)
        super().__init__(source, target, variance.sum().item(),
                         source.covariance().trace().item())

    def _raw_map(self, x: Tensor) -> Tensor:
        return sum(p.gradient(x) for p in self.potentials)

    def true_map(self, x: Tensor) -> Tensor:
        """T*(x) [n, dim] for x [n, dim], in x's dtype and device."""
        out = (self._raw_map(x.cpu()) - self.shift) * self.scale
        return out.to(device=x.device, dtype=x.dtype)


def published_table(runs: list[dict]) -> str:
    """A Markdown table of measured forward L2-UVP (``runs``: dicts with ``dim``, ``l2_uvp``
    and optionally ``inverse_l2_uvp``, ``bures_l2_uvp``, ``seconds``) beside the paper's rows."""
    by_dim = {int(r["dim"]): r for r in runs}

    def cells(values: list[float | None]) -> str:
        return " | ".join("div" if v is None else ("-" if v != v else f"{v:.2f}")
                          for v in values)

    def measured(key: str) -> list[float | None]:
        return [by_dim[d][key] if d in by_dim and key in by_dim[d] else float("nan")
                for d in DIMS]

    lines = ["| D | " + " | ".join(map(str, DIMS)) + " |",
             "|---|" + "---|" * len(DIMS),
             "| otmap (forward) | " + cells(measured("l2_uvp")) + " |"]
    if any("inverse_l2_uvp" in r for r in runs):
        lines.append("| otmap (inverse) | " + cells(measured("inverse_l2_uvp")) + " |")
    if any("bures_l2_uvp" in r for r in runs):
        lines.append("| linear, measured | " + cells(measured("bures_l2_uvp")) + " |")
    if any("seconds" in r for r in runs):
        lines.append("| otmap seconds | " + cells(measured("seconds")) + " |")
    lines += [f"| {name} (paper) | {cells(list(values))} |" for name, values in PUBLISHED.items()]
    return "\n".join(lines)
