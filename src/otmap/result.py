"""The trained model: a map you can apply, sample from, save and load."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from otmap import __version__
from otmap.checkpoint import FORMAT, VERSION, atomic_save, module_record, read_checkpoint
from otmap.costs import COSTS, Cost, build_cost
from otmap.embeddings import build_embedding
from otmap.errors import CheckpointError, InputError
from otmap.maps import DeterministicMap, StochasticMap, TransportMap
from otmap.nets import build_net


class TransportResult:
    """A fitted transport map.

    ``transport(x)`` maps ``[n, *source_shape]`` to ``[n, *target_shape]`` (one noise draw per
    input for a stochastic map); ``transport(x, num_samples=k)`` gives ``[n, k, *target_shape]``.
    """

    def __init__(self, transport_map: TransportMap, *, cost: Cost | None,
                 source_shape: tuple[int, ...], target_shape: tuple[int, ...],
                 embedding: nn.Module | None = None, config: dict | None = None,
                 training: dict | None = None, run_dir: str | Path | None = None) -> None:
        self.map = transport_map
        self.cost = cost
        self.embedding = embedding
        self.source_shape, self.target_shape = tuple(source_shape), tuple(target_shape)
        self.config = config or {}
        self.training = training
        self.run_dir = Path(run_dir) if run_dir is not None else None

    @property
    def device(self) -> torch.device:
        return next(self.map.parameters()).device

    def to(self, device: str | torch.device) -> TransportResult:
        self.map.to(device)
        return self

    def sample(self, n: int) -> Tensor:
        """``T(x)`` for ``n`` fresh source samples (e.g. images from noise), when the source is
        a built-in distribution recorded in the config (``{"toy": ...}``)."""
        from otmap.data.specs import sampler_from_spec

        spec = self.config.get("source")
        if not (isinstance(spec, dict) and "toy" in spec):
            raise InputError("sample(n) needs a built-in source distribution (a toy spec such "
                             "as {'toy': 'gaussian', 'dim': 192}); use transport(x) instead")
        return self.transport(sampler_from_spec(spec, "source").sample(n))

    @torch.no_grad()
    def transport(self, x: Tensor, num_samples: int | None = None,
                  batch_size: int = 4096) -> Tensor:
        """Apply the map to ``x`` ``[n, *source_shape]`` in batches; the output is on x's device."""
        if not isinstance(x, Tensor):
            x = torch.as_tensor(x)
        if tuple(x.shape[1:]) != self.source_shape:
            raise InputError(
                f"transport expects inputs of shape [n, {', '.join(map(str, self.source_shape))}]"
                f", got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"inputs must be floating point, got {x.dtype}; use x.float()")
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

    def checkpoint(self) -> dict:
        """The checkpoint dict (see :mod:`otmap.checkpoint`)."""
        noise = ({"noise_dim": self.map.noise_dim, "noise_std": self.map.noise_std,
                  "inject": self.map.inject} if isinstance(self.map, StochasticMap) else None)
        return {
            "format": FORMAT, "version": VERSION, "otmap_version": __version__,
            "model": {
                "map": module_record(self.map.net),
                "map_state": self.map.state_dict(),
                "noise": noise,
                "embedding": module_record(self.embedding),
                "cost": _cost_record(self.cost),
                "source_shape": list(self.source_shape),
                "target_shape": list(self.target_shape),
            },
            "training": self.training,
            "config": self.config,
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint file (atomically) that :func:`otmap.load` reads back."""
        return atomic_save(self.checkpoint(), path)

    def __repr__(self) -> str:
        return (f"TransportResult({type(self.map).__name__}, {list(self.source_shape)} -> "
                f"{list(self.target_shape)}, cost={self.cost!r})")


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


def load(path: str | Path, device: str | torch.device = "cpu",
         trusted: bool = False) -> TransportResult:
    """Load a :class:`TransportResult` from a checkpoint file or a run folder."""
    data = read_checkpoint(path, trusted=trusted)
    try:
        model = data["model"]
        net = _rebuild(model["map"], "map")
        noise = model.get("noise")
        transport_map = StochasticMap(net, **noise) if noise else DeterministicMap(net)
        transport_map.load_state_dict(model["map_state"])
        embedding = _rebuild(model.get("embedding"), "embedding", build_embedding)
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
            run_dir=Path(path) if Path(path).is_dir() else None,
        )
    except (KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the checkpoint is incomplete or damaged ({err})") from None
    return result.to(device)
