"""``otmap.fit``: learn an optimal transport map between two sample sets."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from otmap.core.costs import Cost, FromCallable, build_cost
from otmap.core.embeddings import build_embedding
from otmap.core.maps import DeterministicMap, StochasticMap, TransportMap
from otmap.core.solver import NeuralOT, default_k_map, default_lr
from otmap.data import Sampler, ToySampler, as_sampler, check_samples
from otmap.data.samplers import on_device
from otmap.errors import InputError
from otmap.model.result import TransportResult
from otmap.nets import build_net
from otmap.train import acceleration, distributed
from otmap.train.config import TrainConfig
from otmap.train.distributed import Ranks
from otmap.train.runtime import Runtime
from otmap.train.trainer import Evaluator, Trainer

#: samples drawn once to infer shapes and set the networks' input scaling
_SCALING_SAMPLES = 4096


def default_width(dim: int, stochastic: bool = False) -> int:
    """Hidden width of the default vector networks for data of dimension ``dim``: 512 for
    deterministic maps at every D (at D = 2 and 4, 512 gave 3x lower L2-UVP than 128 on the
    W2 benchmark, docs/benchmarks.md); for stochastic maps, whose map steps see
    ``num_samples`` outputs per input, ``32 * dim`` within [128, 512] (128 for 2-D toys, 512
    from D = 16 on)."""
    return min(512, max(128, 32 * dim)) if stochastic else 512


def _image_channels(size: int, width: int = 64, cap: int = 256) -> list[int]:
    """Widths of the down-sampling blocks of a default potential: down to a 4x4 map."""
    downs = max(1, int(math.log2(size)) - 2)
    return [min(width * 2**i, cap) for i in range(downs + 1)]


def _check_potential_fits(spec: dict, target_shape: tuple[int, ...]) -> None:
    """:class:`InputError` when a ResNetPotential spec halves the images more often than their
    size allows (each entry of ``channels`` halves ``h`` and ``w``)."""
    if spec.get("name") != "ResNetPotential" or len(target_shape) != 3:
        return
    downs = len(spec.get("channels", ()))
    if min(target_shape[1:]) < 2**downs:
        raise InputError(
            f"target images {target_shape[1]}x{target_shape[2]} are too small for the "
            f"potential ResNetPotential, which halves them {downs} times (needs at least "
            f"{2**downs}x{2**downs}): pass potential={{'channels': [64]}} (one halving per "
            "entry), or flatten the samples to vectors with x.flatten(1)")


def default_embedding(source_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> dict:
    """OTM's Q for noise vectors -> images: reshape to ``c x s x s`` and up-sample bicubically
    (192-d noise -> 3x8x8 -> the image size); a clear error when no such embedding fits."""
    if len(source_shape) == 1 and len(target_shape) == 3:
        c, h, w = target_shape
        side = math.isqrt(source_shape[0] // c) if source_shape[0] % c == 0 else 0
        if side and c * side * side == source_shape[0] and h == w:
            return {"name": "Upsample", "size": h, "shape": [c, side, side]}
    raise InputError(
        f"source samples have shape {source_shape} and target samples {target_shape}: the cost "
        "compares Q(x) with T(x), so pass embedding=... mapping the source to the target's shape "
        "(otmap.core.embeddings: Upsample, LinearProjection, GrayToRGB, Reshape, or any fixed "
        "nn.Module), or a cost c(x, y) that accepts both shapes"
    )


#: default noise dimension of a map conditioned on its noise (inject "condition"): KNOT's CUNet's
CONDITION_NOISE_DIM = 128


def _default_specs(source_shape: tuple[int, ...], target_shape: tuple[int, ...],
                   map_spec: dict | None, potential_spec: dict | None,
                   stochastic: bool) -> tuple[dict, dict | None, dict]:
    """Network specs (merged over the defaults for the data's shapes) and the noise spec of a
    stochastic map. Vectors get MLPs; images a ResNet potential and a UNet (image -> image) or
    an up-sampling generator (noise vector -> image). A stochastic image -> image map takes its
    noise as extra input channels of the UNet, or, when the spec asks for it (``"name":
    "CondUNet"`` or ``noise: {"inject": "condition"}``), as the noise vector conditioning a
    :class:`~otmap.nets.CondUNet` (whose map is stochastic under any cost)."""
    map_spec, potential_spec = dict(map_spec or {}), dict(potential_spec or {})
    noise = map_spec.pop("noise", None)
    conditioned = (map_spec.get("name") == "CondUNet"
                   or (noise or {}).get("inject") == "condition")
    if noise is None and (stochastic or conditioned):
        noise = {}
    image_in, image_out = len(source_shape) == 3, len(target_shape) == 3
    if noise is not None:
        default_noise = ({"noise_dim": map_spec.get("noise_dim", CONDITION_NOISE_DIM),
                          "inject": "condition"} if conditioned
                         else {"noise_dim": 1, "inject": "channels"} if image_in
                         else {"noise_dim": source_shape[0], "inject": "concat"})
        noise = {"noise_std": 1.0, **default_noise, **noise}
        if conditioned and noise["inject"] != "condition":
            raise InputError(f"a CondUNet map takes its noise as a condition: noise inject must "
                             f"be 'condition', got {noise['inject']!r}")
    if image_out:
        c, h = target_shape[0], target_shape[1]
        potential_spec = {"name": "ResNetPotential", "in_channels": c,
                          "channels": _image_channels(h), **potential_spec}
        if image_in:
            # a UNet takes noise channels as extra inputs, a CondUNet its noise vector aside
            net = ({"name": "CondUNet", "noise_dim": noise["noise_dim"]} if conditioned
                   else {"name": "UNet"})
            extra = noise["noise_dim"] if noise is not None and not conditioned else 0
            map_spec = {**net, "in_channels": source_shape[0] + extra, "out_channels": c,
                        "channels": [64, 128, 256][: 1 + min(2, h // 8)], **map_spec}
        elif len(source_shape) == 1:
            map_spec = {"name": "UpsampleGenerator", "nz": source_shape[0], "out_channels": c,
                        "size": h, "channels": _image_channels(h, 64, 256)[::-1], **map_spec}
        return map_spec, noise, potential_spec
    if len(source_shape) != 1 or len(target_shape) != 1:
        raise InputError(f"no default networks for data {source_shape} -> {target_shape}: "
                         "pass map=... and potential=... (nn.Module or spec dicts)")
    d_in, d_out = source_shape[0], target_shape[0]
    # T(x) = x + net(x) for deterministic maps; a stochastic T(x, z) = net(cat[x, z]) starts at
    # 0 (the residual start x + net(cat[x, z]) ended worse on the half-circles toy for both
    # weak costs, docs/benchmarks.md)
    residual = d_in == d_out and noise is None
    if noise is not None:
        d_in += noise["noise_dim"]
    hidden = [default_width(d_out, stochastic=noise is not None)] * 3
    map_spec = {"name": "MapMLP", "in_features": d_in, "out_features": d_out, "hidden": hidden,
                **map_spec}
    if map_spec["name"] == "MapMLP":
        map_spec.setdefault("residual", residual)
    potential_spec = {"name": "PotentialMLP", "in_features": d_out, "hidden": hidden,
                      **potential_spec}
    return map_spec, noise, potential_spec


def _build_map(net: nn.Module | dict, noise: dict | None) -> TransportMap:
    """Wrap a network (or build it from its spec) as a deterministic or stochastic map."""
    if isinstance(net, TransportMap):
        return net
    net = net if isinstance(net, nn.Module) else build_net(net)
    return StochasticMap(net, **noise) if noise is not None else DeterministicMap(net)


@dataclass
class Setup:
    """Everything a training loop needs, built from data, options and network specs."""

    solver: NeuralOT
    source: Sampler
    target: Sampler
    config: TrainConfig
    result: TransportResult
    record: dict
    ranks: Ranks
    channels_last: bool
    #: the precision the networks run in, and for ``precision="auto"`` what decided it
    precision: acceleration.PrecisionChoice


def prepare(source: Any, target: Any, config: TrainConfig | dict | None = None, *,
            cost: str | dict | Cost | Any = None, map: nn.Module | dict | None = None,
            potential: nn.Module | dict | None = None,
            embedding: nn.Module | dict | None = None, record: dict | None = None,
            run_dir: str | Path | None = None, runtime: Runtime | None = None,
            **overrides: Any) -> Setup:
    """Build the solver of :func:`fit` (same arguments) without training: checks the data,
    builds the networks for its shapes and applies the speed options, inside ``runtime`` (a
    :class:`~otmap.train.runtime.Runtime` already entered; without one, it seeds torch and
    joins torchrun's process group itself and leaves neither)."""
    config = TrainConfig.build(config, "fit", **overrides)
    if runtime is None:
        runtime = Runtime(config.seed, config.device).__enter__()
    if isinstance(embedding, dict):
        embedding = build_embedding(embedding)
    source_s, target_s = as_sampler(source, "source"), as_sampler(target, "target")
    x0 = check_samples(source_s.sample(_SCALING_SAMPLES), "source")
    y0 = check_samples(target_s.sample(_SCALING_SAMPLES), "target")
    if bool((y0 == y0[:1]).all()):  # the fidelity's reference distance would be 0
        raise InputError(f"target: all {len(y0)} samples drawn are the same point, so there is "
                         "no distribution to fit; check the target data (a constant file, "
                         "column or sampler?)")
    source_shape, target_shape = tuple(x0.shape[1:]), tuple(y0.shape[1:])
    cost_obj = build_cost(cost, target_shape)
    if embedding is None and source_shape != target_shape and not isinstance(cost_obj,
                                                                              FromCallable):
        embedding = build_embedding(default_embedding(source_shape, target_shape))
    map_spec, noise, potential_spec = _default_specs(
        source_shape, target_shape, map if isinstance(map, dict) else None,
        potential if isinstance(potential, dict) else None, stochastic=cost_obj.min_samples > 1)
    transport_map = _build_map(map if isinstance(map, nn.Module) else map_spec, noise)
    if not isinstance(potential, nn.Module):
        _check_potential_fits(potential_spec, target_shape)
    f = potential if isinstance(potential, nn.Module) else build_net(potential_spec)
    transport_map.fit_scaling(x0, y0)
    if hasattr(f, "fit_scaling"):
        f.fit_scaling(y0)
    images = len(target_shape) == 3
    if config.k_map is None:
        config = dataclasses.replace(config, k_map=default_k_map(transport_map.stochastic, images))
    lr = default_lr(target_shape[0] if len(target_shape) == 1 else None)
    config = dataclasses.replace(config, lr_map=config.lr_map or lr,
                                 lr_potential=config.lr_potential or lr)
    dev = runtime.device
    channels_last = acceleration.use_channels_last(
        config.channels_last, images,
        custom_modules=isinstance(map, nn.Module) or isinstance(potential, nn.Module))
    if channels_last:
        acceleration.to_channels_last(transport_map, f)
    if dev.type == "cuda":
        source_s, target_s = on_device(source_s, dev), on_device(target_s, dev)
    solver = NeuralOT(transport_map.to(dev), f.to(dev), cost_obj, config,
                      embedding=embedding.to(dev) if embedding is not None else None)
    precision = acceleration.resolve_precision(
        config.precision, solver, x0, y0, batch_size=config.batch_size,
        channels_last=channels_last, ranks=runtime.ranks)
    solver.autocast_dtype = precision.dtype
    # the record names the precision chosen, as it does k_map's default (a resume runs it)
    config = dataclasses.replace(config, precision=precision.precision)
    if config.compile:
        acceleration.compile_networks(
            transport_map, f,
            double_backward=bool(config.gradient_penalty or config.gradient_optimality))
    if runtime.ranks.distributed:
        solver.distribute(lambda module: distributed.wrap(module, dev))
    record = dict(record or {})
    if isinstance(source_s, ToySampler) and not record.get("source"):
        record["source"] = {"toy": source_s.name, **source_s.params}
    full_record = {**record, "train": dataclasses.asdict(config),
                   "cost": cost_obj.config(),
                   "map": ({"module": type(map).__name__} if isinstance(map, nn.Module)
                           else {**map_spec, "noise": noise}),
                   "potential": ({"module": type(potential).__name__}
                                 if isinstance(potential, nn.Module) else potential_spec)}
    result = TransportResult(solver.eval_map, cost=cost_obj, embedding=embedding,
                             potential=solver.potential,
                             source_shape=source_shape, target_shape=target_shape,
                             config=full_record, run_dir=run_dir)
    return Setup(solver, source_s, target_s, config, result, full_record, runtime.ranks,
                 channels_last, precision)


def describe(setup: Setup) -> str:
    """One line on how a run computes: device, precision, layout, processes and batch."""
    solver = setup.solver
    device = next(solver.map.parameters()).device
    parts = [str(device), setup.precision.describe()]
    if setup.channels_last:
        parts.append("channels-last")
    if setup.config.compile:
        parts.append("compiled")
    n = setup.ranks.world_size
    parts.append(f"{n} processes x batch {setup.config.batch_size}" if n > 1
                 else f"batch {setup.config.batch_size}")
    return ", ".join(parts)


def fit(source: Any, target: Any, config: TrainConfig | dict | None = None, *,
        cost: str | dict | Cost | Any = None, map: nn.Module | dict | None = None,
        potential: nn.Module | dict | None = None, embedding: nn.Module | dict | None = None,
        run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
        evaluator: Evaluator | None = None, record: dict | None = None,
        **overrides: Any) -> TransportResult:
    """Learn a transport map from ``source`` to ``target``.

    Args:
        source, target: a Tensor of samples ``[n, *shape]``, a sampler (``sample(n)``), or a
            callable ``n -> Tensor``.
        config: a :class:`~otmap.train.config.TrainConfig` (or a mapping of its fields, like a
            recipe's ``train:`` section); None: the defaults.
        cost: ``None`` (``1/2 |x - y|^2``), a name (``"quadratic"``, ``"inner_product"``), a
            :class:`~otmap.costs.Cost`, or a callable ``c(x, y) -> [N]``.
        map, potential: ``nn.Module`` or spec dicts (``{"name": "MapMLP", "hidden": [...]}``);
            defaults: :class:`~otmap.nets.MapMLP`/:class:`~otmap.nets.PotentialMLP` for vectors.
            A map spec's ``"noise"`` entry (``{"noise_dim", "noise_std", "inject"}``) makes a
            :class:`~otmap.maps.StochasticMap`; a weak cost makes one by default (noise of the
            data's dimension, std 1, concatenated), with ``num_samples=4`` per input.
        embedding: fixed Q applied to x before the cost, for unequal dimensions: an
            ``nn.Module`` or a spec (``{"name": "Upsample", "size": 32, "shape": [3, 8, 8]}``,
            see :mod:`otmap.embeddings`).
        run_dir: write config, metrics.jsonl, checkpoints and plots there; ``resume`` continues.
        evaluator: extra held-out metrics ``(result, x, y) -> dict`` at every evaluation.
        **overrides: fields of :class:`TrainConfig` replacing the config's (``steps=500``,
            ``seed=1``, ``device="cuda"``), checked against it (an unknown name is an error).

    Under ``torchrun`` every process calls ``fit`` alike; they train one map together (see
    :mod:`otmap.train.distributed`), rank 0 writes the run folder, and ``fit`` leaves the
    process group it joined before returning.

    Returns:
        A :class:`TransportResult`: ``result.transport(x)``, ``result.save(path)``.
    """
    config = TrainConfig.build(config, "fit", **overrides)
    with Runtime(config.seed, config.device) as runtime:
        setup = prepare(source, target, config, cost=cost, map=map, potential=potential,
                        embedding=embedding, record=record, run_dir=run_dir, runtime=runtime)
        if progress and setup.ranks.is_main:
            print(f"otmap: {describe(setup)}", file=sys.stderr)
        trainer = Trainer(setup.solver, setup.source, setup.target, setup.config, setup.result,
                          run_dir=run_dir, record=setup.record, evaluator=evaluator,
                          progress=progress, resume=resume, ranks=setup.ranks,
                          channels_last=setup.channels_last)
        return trainer.run()


__all__ = ["fit", "prepare", "Setup", "default_embedding", "default_k_map", "default_width"]
