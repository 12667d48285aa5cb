"""The W2 benchmark loader: a fabricated potential with a hand-computed gradient, the pair's
construction, errors for missing or foreign files, and (when the files are here) the real pairs'
linear baselines against the published values."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch

from otmap.benchmarks import W2BenchmarkPair
from otmap.benchmarks.w2b import DIMS, DenseICNN, best_published, published_table
from otmap.cli import main
from otmap.errors import InputError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "w2b"
needs_files = pytest.mark.skipif(not (SHARED / "Mix3toMix10" / "2_v1.pt").is_file(),
                                 reason="the W2 benchmark files are not beside this checkout")

W, C, B1 = 0.7, 0.3, 5.0
A = torch.tensor([0.6, -0.8])


def fabricated_state(scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A D=2 ICNN in the benchmark's format with ``phi(x) = scale * W (C (x_0 + 5) +
    (a.x)^2) + 1e-2/2 |x|^2`` for |x_0| < 5 (every CELU sees a positive input), stored in float64
    so the hand-computed gradient is exact."""
    widths = [3, 3, 2]
    zeros = partial(torch.zeros, dtype=torch.float64)  # exact constants: float32 rounds 0.7
    state = {}
    for i, width in enumerate(widths):
        state[f"quadratic_layers.{i}.quadratic_decomposed"] = zeros(2, 1, width)
        state[f"quadratic_layers.{i}.weight"] = zeros(width, 2)
        state[f"quadratic_layers.{i}.bias"] = zeros(width)
    state["quadratic_layers.1.weight"][0, 0] = 1.0      # h1_0 = CELU(x_0 + 5) = x_0 + 5
    state["quadratic_layers.1.bias"][0] = B1
    state["quadratic_layers.2.quadratic_decomposed"][:, 0, 0] = A  # (a.x)^2 into h2_0
    state["convex_layers.0.weight"] = zeros(3, 3)
    state["convex_layers.1.weight"] = zeros(2, 3)
    state["convex_layers.1.weight"][0, 0] = C
    state["final_layer.weight"] = torch.tensor([[W * scale, 0.0]], dtype=torch.float64)
    return state


def hand_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    a = A.double()
    grad = scale * W * (C * torch.tensor([1.0, 0.0], dtype=torch.float64)
                        + 2 * (x.double() @ a)[:, None] * a)
    return grad + 1e-2 * x.double()


@pytest.fixture
def fabricated_root(tmp_path: Path) -> Path:
    folder = tmp_path / "Mix3toMix10"
    folder.mkdir()
    torch.save(fabricated_state(1.0), folder / "2_v1.pt")
    torch.save(fabricated_state(2.0), folder / "2_v2.pt")
    return tmp_path


def test_icnn_gradient_matches_hand_computation():
    icnn = DenseICNN(fabricated_state())
    x = torch.randn(64, 2, dtype=torch.float64).clamp(-3, 3)
    assert torch.allclose(icnn.gradient(x), hand_gradient(x), atol=1e-10)


def test_pair_from_fabricated_files(fabricated_root: Path):
    pair = W2BenchmarkPair(2, root=fabricated_root)
    x = pair.source.sample(4096, torch.Generator().manual_seed(5)).clamp(-4, 4)
    raw = hand_gradient(x, 1.0) + hand_gradient(x, 2.0)
    truth = pair.true_map(x).double()
    # T* = s (grad phi_1 + grad phi_2 - m): an affine image of the hand-computed sum
    s = (truth[1:] - truth[:1]).norm() / (raw[1:] - raw[:1]).norm()
    assert torch.allclose(truth, s * (raw - raw[0]) + truth[0], atol=1e-6)
    # standardised: mean 0 and mean coordinate variance 1 under the source (fresh samples)
    fresh = pair.true_map(pair.source.sample(20000, torch.Generator().manual_seed(6)))
    assert fresh.mean(0).abs().max() < 0.05
    assert abs(fresh.var(0).mean().item() - 1.0) < 0.05
    assert abs(pair.target_variance - fresh.var(0).sum().item()) < 0.1
    # the source's total variance is about D, as the benchmark standardises it
    assert abs(pair.source_variance - 2.0) < 0.2
    # the exact map scores perfectly
    assert pair.score(pair.true_map)["l2_uvp"] < 1e-8


def test_source_construction_matches_the_description():
    """Centres take -1, 0, 1 in every coordinate (before the common rescaling)."""
    from otmap.benchmarks.w2b import mix3_source

    source = mix3_source(8)
    centres = source.means.double()
    ratio = centres.abs().max()
    sorted_coords = (centres / ratio).sort(dim=0).values
    assert torch.allclose(sorted_coords, torch.tensor([-1.0, 0.0, 1.0],
                                                      dtype=torch.float64)[:, None].expand(3, 8),
                          atol=1e-6)
    assert abs(source.covariance().trace().item() - 8.0) < 0.8


def test_missing_and_foreign_files(tmp_path: Path):
    with pytest.raises(InputError, match=r"16_v1.pt.*Wasserstein2Benchmark"):
        W2BenchmarkPair(16, root=tmp_path)
    with pytest.raises(InputError, match="dim in"):
        W2BenchmarkPair(3, root=tmp_path)
    (tmp_path / "2_v1.pt").write_bytes(b"not a torch file")
    (tmp_path / "2_v2.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a readable W2 benchmark potential"):
        W2BenchmarkPair(2, root=tmp_path)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "2_v1.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "2_v2.pt")
    with pytest.raises(InputError, match="not a W2 benchmark potential"):
        W2BenchmarkPair(2, root=tmp_path)


def test_default_root_from_environment(fabricated_root: Path, monkeypatch):
    monkeypatch.setenv("OTMAP_W2B_DIR", str(fabricated_root))
    assert W2BenchmarkPair(2).dim == 2


def test_published_table_lists_every_row():
    table = published_table([{"dim": 16, "l2_uvp": 1.234, "seconds": 100.0}])
    assert "| otmap (forward) | - | - | - | 1.23 |" in table
    assert "| MM:R (paper) | 0.10 | 0.30 | 0.70 | 1.90 | 2.80 | 4.50 | div |" in table
    assert best_published(16) == 1.4 and best_published(128) == 2.0 and len(DIMS) == 7


@needs_files
@pytest.mark.parametrize("dim, published", [(2, 14.1), (16, 41.6)])
def test_real_pairs_linear_baseline(dim: int, published: float):
    pair = W2BenchmarkPair(dim, root=SHARED)
    bures = pair.baseline_scores(n_fit=20000, generator=torch.Generator().manual_seed(0))
    assert abs(bures["bures"]["l2_uvp"] - published) < 1.5
    assert pair.score(pair.true_map)["l2_uvp"] < 1e-6


@needs_files
def test_cli_bench_w2b(tmp_path: Path, capsys, torch_single_thread):
    code = main(["bench", "w2b", "--dim", "2", "--root", str(SHARED), "--steps", "30",
                 "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["pair"] == "w2b" and summary["dim"] == 2 and summary["steps"] == 30
    for key in ("l2_uvp", "cos", "inverse_l2_uvp", "bures_l2_uvp", "seconds"):
        assert key in summary
    # the linear baseline measured here is the published one
    assert abs(summary["bures_l2_uvp"] - 14.1) < 1.5


def test_cli_bench_needs_a_dimension(capsys):
    assert main(["bench", "w2b"]) == 2
    assert "--dim D" in capsys.readouterr().err
