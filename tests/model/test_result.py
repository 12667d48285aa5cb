"""TransportResult: save/load round trips, run folders, exact resume, transport input checks."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import otmap
import otmap.model.result as result_module
from otmap.core.costs import InnerProduct, StrongQuadratic
from otmap.core.embeddings import LinearProjection
from otmap.core.maps import DeterministicMap
from otmap.errors import CheckpointError, InputError
from otmap.model.result import TransportResult

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class AffineNet(nn.Module):
    """A user network that is not built from a spec (pickled whole in checkpoints)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x)


@pytest.fixture(scope="module")
def fitted(gaussian2d):
    kwargs = {"map": {"hidden": [32, 32]}, "potential": {"hidden": [32, 32]}, "batch_size": 32,
              "k_map": 2, "progress": False, "eval_samples": 64, "lr_schedule": None}
    return otmap.fit(gaussian2d.source, gaussian2d.target, steps=15, seed=3, **kwargs)


def _points(n: int = 300) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(11)) * 1.5


def _rows(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


# ----------------------------------------------------------------------------- save / load

def test_save_load_gives_identical_outputs(fitted, tmp_path):
    path = fitted.save(tmp_path / "sub" / "map.pt")
    assert path.is_file()
    loaded = otmap.load(path)
    x = _points()
    assert torch.equal(loaded.transport(x), fitted.transport(x))
    assert loaded.source_shape == fitted.source_shape == (2,)
    assert loaded.target_shape == (2,)
    assert loaded.cost.config() == fitted.cost.config()
    assert loaded.run_dir is None
    # the map really was trained: it is not the identity it started as
    assert not torch.allclose(fitted.transport(x), x)
    # a model file holds the model only: training state lives in a run's checkpoints
    assert fitted.training["step"] == 15 and loaded.training is None
    # no temporary files left next to the checkpoint (atomic write)
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.pt"]


def _tensors(value: object) -> list[torch.Tensor]:
    """Every tensor in nested dicts / lists / tuples."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    return []


def test_save_writes_the_model_without_optimiser_states(fitted, tmp_path):
    data = torch.load(fitted.save(tmp_path / "map.pt"), weights_only=True)
    assert data["training"] is None and "rng" not in data
    assert data["otmap_version"] == otmap.__version__ and data["config"] == fitted.config
    model = data["model"]
    assert model["potential"]["spec"] == fitted.potential.otmap_spec
    assert model["cost"] == fitted.cost.config()
    # only the map's and the potential's weights: no Adam moments, no second copy of the nets
    saved = sum(t.numel() for t in _tensors(data))
    weights = sum(t.numel() for m in (fitted.map, fitted.potential)
                  for t in m.state_dict().values())
    assert saved == weights


def test_load_reads_older_model_files_with_optimiser_states(fitted, tmp_path):
    path = tmp_path / "old.pt"
    # what save() wrote before: the model with the optimiser states in "training"
    torch.save({**fitted.checkpoint(), "training": fitted.training}, path)
    loaded = otmap.load(path)
    x = _points()
    assert torch.equal(loaded.transport(x), fitted.transport(x))
    assert loaded.training["step"] == 15 and "map_optimizer" in loaded.training
    assert torch.load(loaded.save(tmp_path / "new.pt"), weights_only=True)["training"] is None


def test_to_moves_the_map_the_potential_and_the_embedding():
    result = TransportResult(DeterministicMap(nn.Linear(3, 2)), cost=StrongQuadratic(),
                             source_shape=(3,), target_shape=(2,),
                             embedding=LinearProjection(3, 2), potential=nn.Linear(2, 1))
    assert result.to("meta") is result
    modules = (result.map, result.potential, result.embedding)
    assert {t.device.type for m in modules for t in m.state_dict().values()} == {"meta"}
    assert result.device.type == "meta"


def test_sample_draws_from_the_recorded_toy_source(gaussian2d):
    net = nn.Linear(2, 2)
    result = TransportResult(DeterministicMap(net), cost=StrongQuadratic(), source_shape=(2,),
                             target_shape=(2,), config={"source": {"toy": "gaussian", "dim": 2}})
    torch.manual_seed(0)
    out = result.sample(5)
    torch.manual_seed(0)
    assert torch.equal(out, net(torch.randn(5, 2)).detach())
    result.config = {"source": {"dataset": "digits"}}
    with pytest.raises(InputError, match="built-in source"):
        result.sample(5)


def test_the_model_layer_imports_at_module_level():
    """otmap.model sits above otmap.data: no import has to wait inside a function."""
    tree = ast.parse(open(result_module.__file__).read())
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert not [f.name for f in functions for n in ast.walk(f)
                if isinstance(n, ast.Import | ast.ImportFrom)]


def test_save_load_keeps_cost_and_batches_give_same_outputs(gaussian2d, small_fit_kwargs,
                                                              tmp_path):
    result = otmap.fit(gaussian2d.source, gaussian2d.target, cost=InnerProduct(scale=2.0),
                       steps=3, **small_fit_kwargs)
    loaded = otmap.load(result.save(tmp_path / "ip.pt"))
    assert type(loaded.cost) is InnerProduct and loaded.cost.scale == 2.0
    x = _points(50)
    # batched application equals one batch
    assert torch.allclose(loaded.transport(x, batch_size=7), loaded.transport(x), atol=1e-6)
    assert loaded.transport(x, num_samples=3).shape == (50, 3, 2)


def test_custom_module_needs_trusted(gaussian2d, small_fit_kwargs, tmp_path):
    kwargs = {k: v for k, v in small_fit_kwargs.items() if k != "map"}
    result = otmap.fit(gaussian2d.source, gaussian2d.target, map=AffineNet(), steps=3, **kwargs)
    path = result.save(tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match="trusted=True"):
        otmap.load(path)
    loaded = otmap.load(path, trusted=True)
    x = _points(40)
    assert torch.equal(loaded.transport(x), result.transport(x))


def test_transport_accepts_numpy_and_float64(fitted):
    x = _points(20)
    expected = fitted.transport(x)
    assert torch.allclose(fitted.transport(x.numpy()), expected)
    out64 = fitted.transport(x.double())
    assert out64.shape == (20, 2)
    assert torch.allclose(out64.float(), expected, atol=1e-6)
    assert torch.equal(fitted(x), expected)  # __call__ is transport


@pytest.mark.parametrize("bad, fragment", [
    (torch.zeros(5, 3), r"shape \[n, 2\]"),
    (torch.zeros(2), r"shape \[n, 2\]"),
    (torch.zeros(4, 2, 1), r"shape \[n, 2\]"),
    (torch.zeros(5, 2, dtype=torch.int64), "x.float()"),
    (torch.zeros(5, 2, dtype=torch.bool), "floating point"),
])
def test_transport_wrong_shape_or_dtype(fitted, bad, fragment):
    with pytest.raises(InputError, match=fragment):
        fitted.transport(bad)


def test_transport_bad_num_samples(fitted):
    with pytest.raises(InputError, match="num_samples"):
        fitted.transport(_points(5), num_samples=0)


# ----------------------------------------------------------------------------- run folders

def test_run_folder_contents_and_load(gaussian2d, small_fit_kwargs, tmp_path):
    run = tmp_path / "run"
    result = otmap.fit(gaussian2d.source, gaussian2d.target, steps=12, run_dir=run,
                       log_every=3, eval_every=6, checkpoint_every=6, **small_fit_kwargs)
    assert result.run_dir == run
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["steps"] == 12 and config["train"]["log_every"] == 3
    assert config["cost"]["name"] == "StrongQuadratic"

    rows = _rows(run)
    assert [r["step"] for r in rows] == [3, 6, 9, 12]
    assert all({"loss_map", "loss_potential", "cost", "time"} <= set(r) for r in rows)
    assert all("energy" in r for r in rows if r["step"] % 6 == 0)
    assert not any("energy" in r for r in rows if r["step"] % 6)
    times = [r["time"] for r in rows]
    assert times == sorted(times)

    assert (run / "checkpoints" / "last.pt").is_file()
    for name in ("training.png", "transport.png"):
        png = run / "plots" / name
        assert png.read_bytes()[:8] == PNG_MAGIC, name

    from_folder = otmap.load(run)
    from_file = otmap.load(run / "checkpoints" / "last.pt")
    x = _points()
    assert torch.equal(from_folder.transport(x), result.transport(x))
    assert torch.equal(from_file.transport(x), result.transport(x))
    assert from_folder.run_dir == run
    assert from_folder.training["step"] == 12


def test_run_folder_for_1d_data_has_a_transport_plot(small_fit_kwargs, tmp_path):
    kwargs = {k: v for k, v in small_fit_kwargs.items() if k not in ("map", "potential")}
    otmap.fit(lambda n: torch.randn(n, 1), lambda n: 2 * torch.randn(n, 1) + 3, steps=4,
              run_dir=tmp_path / "r1", map={"hidden": [8]}, potential={"hidden": [8]}, **kwargs)
    assert (tmp_path / "r1" / "plots" / "transport.png").read_bytes()[:8] == PNG_MAGIC


def test_resume_from_half_run_equals_uninterrupted_run(gaussian2d, small_fit_kwargs, tmp_path):
    n = 16
    common = dict(seed=5, log_every=2, eval_every=4, checkpoint_every=4, **small_fit_kwargs)
    assert common["lr_schedule"] is None  # the same lr at every step, whatever `steps` is
    a = otmap.fit(gaussian2d.source, gaussian2d.target, steps=n, run_dir=tmp_path / "A", **common)
    half = otmap.fit(gaussian2d.source, gaussian2d.target, steps=n // 2, run_dir=tmp_path / "B",
                     **common)
    x = _points()
    assert not torch.equal(half.transport(x), a.transport(x))
    b = otmap.fit(gaussian2d.source, gaussian2d.target, steps=n, run_dir=tmp_path / "B",
                  resume=True, **common)
    assert torch.equal(a.transport(x), b.transport(x))
    assert torch.equal(otmap.load(tmp_path / "A").transport(x),
                       otmap.load(tmp_path / "B").transport(x))
    rows_a, rows_b = _rows(tmp_path / "A"), _rows(tmp_path / "B")
    assert [r["step"] for r in rows_a] == list(range(2, n + 1, 2))
    assert _without_time(rows_a) == _without_time(rows_b)
    steps_b = [r["step"] for r in rows_b]
    assert steps_b == sorted(set(steps_b))


class Interrupted(RuntimeError):
    pass


def test_resume_after_crash_equals_uninterrupted_run(gaussian2d, small_fit_kwargs, tmp_path):
    """Crash at step 12 after rows 10 (no checkpoint) were logged; the default cosine schedule."""
    kwargs = {k: v for k, v in small_fit_kwargs.items() if k != "lr_schedule"}
    common = dict(steps=14, seed=2, log_every=2, eval_every=4, checkpoint_every=8, **kwargs)

    def evaluator(result, x, y):
        return {"l2_uvp": gaussian2d.l2_uvp(result.transport(x), x)}

    def crashing(result, x, y):
        if result.training is None and crashing.calls == 2:  # the evaluation at step 12
            raise Interrupted("power cut")
        crashing.calls += 1
        return evaluator(result, x, y)

    crashing.calls = 0
    a = otmap.fit(gaussian2d.source, gaussian2d.target, run_dir=tmp_path / "A",
                  evaluator=evaluator, **common)
    with pytest.raises(Interrupted):
        otmap.fit(gaussian2d.source, gaussian2d.target, run_dir=tmp_path / "B",
                  evaluator=crashing, **common)
    assert [r["step"] for r in _rows(tmp_path / "B")] == [2, 4, 6, 8, 10]
    assert otmap.load(tmp_path / "B").training["step"] == 8
    b = otmap.fit(gaussian2d.source, gaussian2d.target, run_dir=tmp_path / "B", resume=True,
                  evaluator=evaluator, **common)
    x = _points()
    assert torch.equal(a.transport(x), b.transport(x))
    rows_a, rows_b = _rows(tmp_path / "A"), _rows(tmp_path / "B")
    assert [r["step"] for r in rows_b] == [2, 4, 6, 8, 10, 12, 14]
    assert _without_time(rows_a) == _without_time(rows_b)
    assert np.isfinite([r["l2_uvp"] for r in rows_b if "l2_uvp" in r]).all()
