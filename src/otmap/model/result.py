"""The trained model: a map you can apply, sample from, save and load."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from otmap._version import __version__
from otmap.core.costs import COSTS, Cost, build_cost
from otmap.core.embeddings import build_embedding
from otmap.core.maps import DeterministicMap, StochasticMap, TransportMap
from otmap.data.specs import sampler_from_spec
from otmap.errors import CheckpointError, InputError
from otmap.model.checkpoint import FORMAT, VERSION, atomic_save, module_record, read_checkpoint
from otmap.nets import build_net


class TransportResult:
    """A fitted transport map.

    ``transport(x)`` maps ``[n, *source_shape]`` to ``[n, *target_shape]`` (one noise draw per
    input for a stochastic map); ``transport(x, num_samples=k)`` gives ``[n, k, *target_shape]``;
    ``inverse(y)`` maps target samples back through the potential (quadratic costs).
    """

    def __init__(self, transport_map: TransportMap, *, cost: Cost | None,
                 source_shape: tuple[int, ...], target_shape: tuple[int, ...],
                 embedding: nn.Module | None = None, config: dict | None = None,
                 training: dict | None = None, run_dir: str | Path | None = None,
                 potential: nn.Module | None = None) -> None:
        self.map = transport_map
        self.potential = potential
        self.cost = cost
        self.embedding = embedding
        self.source_shape, self.target_shape = tuple(source_shape), tuple(target_shape)
        self.config = config or {}
        self.training = training
        self.run_dir = Path(run_dir) if run_dir is not None else None

    @property
    def device(self) -> torch.device:
        """Where the map computes: the device of the map's first parameter, else of its first
        buffer, else of the potential's first parameter or buffer, else the CPU (a map that
        holds no tensors, such as ``nn.Identity``, runs wherever its input is)."""
        for module in (self.map, self.potential):
            if isinstance(module, nn.Module):
                for tensor in itertools.chain(module.parameters(), module.buffers()):
                    return tensor.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> TransportResult:
        """Move everything the result computes with (the map, the potential, the embedding and
        a cost that is an ``nn.Module``) to ``device``; returns the result itself."""
        for module in (self.map, self.potential, self.embedding, self.cost):
            if isinstance(module, nn.Module):
                module.to(device)
        return self

    def sample(self, n: int) -> Tensor:
        """``T(x)`` for ``n`` fresh source samples (e.g. images from noise), when the source is
        a built-in distribution recorded in the config (``{"toy": ...}``)."""
        spec = self.config.get("source")
        if not (isinstance(spec, dict) and "toy" in spec):
            raise InputError("sample(n) needs a built-in source distribution (a toy spec such "
                             "as {'toy': 'gaussian', 'dim': 192}); use transport(x) instead")
        return self.transport(sampler_from_spec(spec, "source").sample(n))

    @torch.no_grad()
    def transport(self, x: Tensor, num_samples: int | None = None,
                  batch_size: int = 4096) -> Tensor:
        """Apply the map to ``x`` ``[n, *source_shape]`` in batches; the output is on x's device."""
        x = _check_inputs(x, self.source_shape, "transport")
        k = 1 if num_samples is None else int(num_samples)
        if k < 1:
            raise InputError(f"num_samples must be >= 1, got {num_samples}")
        training = self.map.training  # the map may be mid-training: evaluate, then restore
        self.map.eval()
        try:
            ys = torch.cat([self.map.sample(chunk.to(self.device, torch.float32), k).to(x.device)
                            for chunk in x.split(batch_size)])
        finally:
            self.map.train(training)
        return ys[:, 0] if num_samples is None else ys

    __call__ = transport

    @property
    def _saved_potential(self) -> nn.Module | None:
        return self.potential if getattr(self.potential, "otmap_spec", None) else None

    @property
    def invertible(self) -> bool:
        """Whether :meth:`inverse` applies: a potential, equal shapes without an embedding,
        and a cost with a closed-form inverse (StrongQuadratic, InnerProduct)."""
        return (self.potential is not None and self.embedding is None
                and self.source_shape == self.target_shape and self.cost is not None
                and type(self.cost).inverse is not Cost.inverse)

    def inverse(self, y: Tensor, batch_size: int = 4096) -> Tensor:
        """The inverse map ``S(y)`` ``[n, *target_shape] -> [n, *source_shape]`` from the potential:
        the x whose optimal output is y, ``grad_y c(x, y) = grad f(y)``; for the quadratic
        cost ``S(y) = y - grad f(y)`` (times ``D / scale`` for ``reduction="mean"``; Brenier: at
        the optimum S = T^-1). Needs equal source and target shapes without an embedding and a
        StrongQuadratic or InnerProduct cost."""
        if self.cost is not None and type(self.cost).inverse is Cost.inverse:
            raise InputError(f"{type(self.cost).__name__} has no closed-form inverse map; "
                             "inverse() needs StrongQuadratic or InnerProduct")
        if self.potential is None:
            raise InputError("this result holds no potential (a model saved before otmap kept "
                             "it, or a custom map): inverse() needs the trained potential")
        if self.embedding is not None or self.source_shape != self.target_shape:
            raise InputError("inverse() needs a map between spaces of the same shape without an "
                             f"embedding; this one maps {list(self.source_shape)} -> "
                             f"{list(self.target_shape)}")
        if self.cost is None:
            raise InputError("inverse() needs the run's cost, which was not saved")
        y = _check_inputs(y, self.target_shape, "inverse")
        training = self.potential.training
        self.potential.eval()
        outputs = []
        try:
            for chunk in y.split(batch_size):
                with torch.enable_grad():
                    chunk = chunk.to(self.device, torch.float32).requires_grad_(True)
                    grad = torch.autograd.grad(self.potential(chunk).sum(), chunk)[0]
                outputs.append(self.cost.inverse(chunk.detach(), grad).to(y.device))
        finally:
            self.potential.train(training)
        return torch.cat(outputs)

    def checkpoint(self) -> dict:
        """The model file's dict (see :mod:`otmap.model.checkpoint`): the map, the potential
        when it was built from a spec, the embedding, the cost, the shapes, the config and the
        versions; ``"training"`` is None (a run's ``checkpoints/last.pt`` adds the training
        state: optimisers, EMA, step, RNG states)."""
        noise = ({"noise_dim": self.map.noise_dim, "noise_std": self.map.noise_std,
                  "inject": self.map.inject} if isinstance(self.map, StochasticMap) else None)
        return {
            "format": FORMAT, "version": VERSION, "otmap_version": __version__,
            "model": {
                "map": module_record(self.map.net),
                "map_state": self.map.state_dict(),
                # a potential built from a spec (custom modules are not pickled into models)
                "potential": module_record(self._saved_potential),
                "potential_state": (None if self._saved_potential is None
                                    else self._saved_potential.state_dict()),
                "noise": noise,
                "embedding": module_record(self.embedding),
                "cost": _cost_record(self.cost),
                "source_shape": list(self.source_shape),
                "target_shape": list(self.target_shape),
            },
            "training": None,
            "config": self.config,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model file (atomically) that :func:`otmap.load` reads back: the model
        without training state (resume a run from its folder, ``checkpoints/last.pt``)."""
        return atomic_save(self.checkpoint(), path)

    def __repr__(self) -> str:
        return (f"TransportResult({type(self.map).__name__}, {list(self.source_shape)} -> "
                f"{list(self.target_shape)}, cost={self.cost!r})")


def _check_inputs(x: Tensor, shape: tuple[int, ...], what: str) -> Tensor:
    """``x`` as a finite float tensor ``[n, *shape]``, or otmap's error naming the expected
    shape, the dtype or how many rows hold NaN/Inf."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if tuple(x.shape[1:]) != shape:
        raise InputError(f"{what} expects inputs of shape [n, {', '.join(map(str, shape))}]"
                         f", got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"inputs must be floating point, got {x.dtype}; use x.float()")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise InputError(f"{what} got NaN or Inf values in {bad} of {len(x)} rows: remove "
                         "or impute those samples (keep = x.flatten(1).isfinite().all(1); "
                         "x[keep])")
    return x


def _cost_record(cost: Cost | None) -> dict | None:
    """A built-in cost's config; a custom cost pickled whole if it can be, else its config
    (e.g. a lambda: the map still loads, without its cost)."""
    if cost is None or type(cost).__name__ in COSTS:
        return None if cost is None else cost.config()
    try:
        pickle.dumps(cost)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cost.config()
    return {"object": cost}


def _rebuild(record: dict | None, what: str,
             builder: Callable[[dict], nn.Module] = build_net) -> nn.Module | None:
    if record is None:
        return None
    if "spec" in record:
        return builder(record["spec"])
    if isinstance(record.get("module"), nn.Module):
        return record["module"]
    raise CheckpointError(f"the checkpoint's {what} record is damaged: {sorted(record)}")


def load(path: str | Path, device: str | torch.device = "cpu", trusted: bool = False,
         checkpoint: str | int = "last") -> TransportResult:
    """Load a :class:`TransportResult` from a checkpoint file or a run folder; for a run
    folder ``checkpoint`` picks ``"last"`` (the run's model, default), ``"best"`` (the
    evaluation with the best ``train.best_metric``) or a step kept by
    ``train.keep_checkpoints``."""
    data = read_checkpoint(path, trusted=trusted, checkpoint=checkpoint)
    try:
        model = data["model"]
        net = _rebuild(model["map"], "map")
        noise = model.get("noise")
        transport_map = StochasticMap(net, **noise) if noise else DeterministicMap(net)
        transport_map.load_state_dict(model["map_state"])
        embedding = _rebuild(model.get("embedding"), "embedding", build_embedding)
        potential = _rebuild(model.get("potential"), "potential")
        if potential is not None:
            potential.load_state_dict(model["potential_state"])
        cost_cfg = dict(model["cost"] or {})
        if "object" in cost_cfg:
            cost = cost_cfg["object"]
        elif cost_cfg.get("name") in COSTS:
            cost = build_cost(cost_cfg, tuple(model["target_shape"]))
        else:  # a user function that could not be pickled: only its name was stored
            cost = None
        result = TransportResult(
            transport_map, cost=cost, embedding=embedding,
            source_shape=tuple(model["source_shape"]), target_shape=tuple(model["target_shape"]),
            config=data.get("config"), training=data.get("training"),
            run_dir=Path(path) if Path(path).is_dir() else None, potential=potential,
        )
    except (KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the checkpoint is incomplete or damaged ({err})") from None
    return result.to(device)
