"""The one saddle-point solver behind OTM, NOT and KNOT.

With source samples x, target samples y, noise z, an embedding Q, a map T and a potential f:

    L(f, T) = E_y f(y) + E_x [ C(Q(x), T(x, .)#S) - E_z f(T(x, z)) ],    sup_f inf_T L(f, T).

* map update (``k_map`` per potential update): minimise
  ``E_x[C_hat(Q(x), {T(x, z_k)}) - mean_k f(T(x, z_k))]``;
* potential update: minimise ``E_x f(T(x, z)) - E_y f(y)`` (plus regularisers).

A deterministic map is the case ``K = 1`` without z.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from otmap.core.config import SolverConfig
from otmap.core.costs import Cost
from otmap.core.maps import TransportMap
from otmap.core.regularizers import PotentialBatch, build_regularizers
from otmap.core.schedules import build_schedule
from otmap.errors import InputError
from otmap.utils.checks import check_keys

SampleFn = Callable[[], Tensor]


def _adam(module: nn.Module, **options) -> torch.optim.Adam:
    """Adam over ``module``'s parameters, with the fused kernel when every parameter is a
    float tensor on a CPU or CUDA device (one kernel for all tensors instead of a loop)."""
    params = list(module.parameters())
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, fused=fused or None, **options)


class _MapSampling(nn.Module):
    """``forward(x, k) = T.sample(x, k)``: the map step's forward as a module call, so that a
    wrapper such as ``DistributedDataParallel`` sees it."""

    def __init__(self, transport_map: TransportMap) -> None:
        super().__init__()
        self.map = transport_map

    def forward(self, x: Tensor, k: int) -> Tensor:
        return self.map.sample(x, k)


#: samples per input in the map step of a stochastic map when ``num_samples`` is not given
DEFAULT_WEAK_SAMPLES = 4


def default_k_map(stochastic: bool, images: bool = False) -> int:
    """Map updates per potential update when ``k_map`` is not given: 10 for deterministic
    vector maps (the map must solve its inner problem ``min_y c(x, y) - f(y)`` before f moves
    on: with 5, the W2 benchmark's D = 64 pair stalled near the linear baseline), else 5 (the
    weak-cost settings of the seeds' toys; image recipes set their own)."""
    return 5 if stochastic or images else 10


#: learning rate of both players when none is given
DEFAULT_LR = 1e-3
#: vector data above this dimension get a learning rate DEFAULT_LR * (LR_DIM / D)^2
LR_DIM = 64


def default_lr(dim: int | None) -> float:
    """Learning rate of both players when none is given, for vector data of dimension
    ``dim`` (None: images and other shapes): ``1e-3 * min(1, 64 / D)^2``. Above D = 64 a step
    of 1e-3 moves the potential faster than 10 map updates can follow: the W2 benchmark's
    D = 128 pair ended at 69.6 % L2-UVP with 1e-3 and at 11.0 % with 3e-4, while D = 64 with
    5e-4 ended at 9.3 % against 8.5 % with 1e-3 (docs/benchmarks.md)."""
    return DEFAULT_LR if dim is None else DEFAULT_LR * min(1.0, LR_DIM / dim) ** 2


class NeuralOT(nn.Module):
    """Holds the two players, their optimisers, the regularisers and the EMA of the map.

    Args:
        transport_map: the map T (``sample(x, k) -> [B, k, *dims]``).
        potential: the potential ``f([N, *dims]) -> [N]``.
        cost: the cost estimator (sees ``embedding(x)``).
        config: the solver's options (:class:`~otmap.core.config.SolverConfig`, or a
            :class:`~otmap.train.config.TrainConfig`, which extends it); None: the defaults.
        embedding: the fixed Q for unequal dimensions (identity when None).
        autocast_dtype: run the networks under ``torch.autocast`` in this dtype (e.g.
            ``torch.bfloat16``); costs and losses stay in float32. None: float32 throughout.
        **overrides: fields of :class:`SolverConfig` replacing the config's (``k_map=2``).

    ``k_map=None`` and ``num_samples=None`` are resolved from the map, learning rates of None
    to :data:`DEFAULT_LR` (see :class:`SolverConfig`); the regularisers are built from
    ``gradient_optimality`` and ``gradient_penalty`` (:mod:`otmap.core.regularizers`).
    """

    def __init__(self, transport_map: TransportMap, potential: nn.Module, cost: Cost,
                 config: SolverConfig | None = None, *, embedding: nn.Module | None = None,
                 autocast_dtype: torch.dtype | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config if config is not None else SolverConfig()
        check_keys(overrides, [f.name for f in fields(SolverConfig)], "NeuralOT")
        if overrides:
            config = dataclasses.replace(config, **overrides)
        stochastic = transport_map.stochastic
        k_map = config.k_map or default_k_map(stochastic)
        num_samples = config.num_samples or (
            max(DEFAULT_WEAK_SAMPLES, cost.min_samples) if stochastic else 1)
        if num_samples < cost.min_samples:
            raise InputError(f"{cost!r} needs num_samples >= {cost.min_samples}, got {num_samples}")
        if not stochastic and num_samples != 1:
            raise InputError("a deterministic map takes num_samples=1; a weak cost needs a "
                             "StochasticMap")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in potential.modules()):
            raise InputError("the potential has batch normalisation, so f(y) would depend on "
                             "the other samples of its batch: use norm='none', 'instance' or "
                             "'group' (OT potentials are functions of one sample)")
        self.config = config
        self.map = transport_map
        self.potential = potential
        self.embedding = embedding if embedding is not None else nn.Identity()
        self.embedding.requires_grad_(False)
        self.cost = cost
        self.k_map, self.num_samples = k_map, num_samples
        self.potential_samples = num_samples if config.potential_all_samples else 1
        self.lr_map = config.lr_map or DEFAULT_LR
        self.lr_potential = config.lr_potential or DEFAULT_LR
        self.lr_schedule = build_schedule(config.lr_schedule, total_steps=config.steps)
        self.ema_decay, self.grad_clip = config.ema_decay, config.grad_clip
        self.regularizers = build_regularizers(config.gradient_optimality,
                                               config.gradient_penalty, cost, self.embedding,
                                               config.expectile, config.expectile_tau)
        options = {"betas": config.betas, "weight_decay": config.weight_decay}
        self.map_optimizer = _adam(self.map, lr=self.lr_map, **options)
        self.potential_optimizer = _adam(self.potential, lr=self.lr_potential, **options)
        self.ema_map = (copy.deepcopy(transport_map).requires_grad_(False)
                        if config.ema_decay else None)
        self.ema_updates = 0
        self.autocast_dtype = autocast_dtype
        # the forwards whose gradients each step applies (see distribute); a plain dict, so
        # the wrappers are not registered twice as sub-modules
        self._trained: dict[str, nn.Module] = {"map": _MapSampling(self.map),
                                               "potential": self.potential}
        self.step = 0

    # -- the modules whose gradients are applied ------------------------------------------------
    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap the two trained players separately (e.g. in ``DistributedDataParallel``): the
        map step's forward of T and the potential step's forward of f go through the wrappers;
        the frozen player of each step is called directly, so only the updated player's
        gradients are synchronised."""
        self._trained = {name: wrap(module) for name, module in self._trained.items()}

    def _autocast(self, x: Tensor) -> torch.autocast:
        return torch.autocast(x.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    # -- losses -------------------------------------------------------------------------------
    def map_loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``mean_b [C_hat(Q(x_b), {T(x_b, z_k)}_k) - mean_k f(T(x_b, z_k))]`` and its cost term."""
        with self._autocast(x):
            ys = self._trained["map"](x, self.num_samples).float()
            b, k = ys.shape[:2]
            f_t = self.potential(ys.reshape(b * k, *ys.shape[2:])).float().view(b, k).mean(1)
        with torch.no_grad():
            qx = self.embedding(x)
        cost = self.cost(qx, ys)  # float32, outside autocast
        return (cost - f_t).mean(), {"cost": cost.mean().detach()}

    def potential_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``mean f(T(x, z)) - mean f(y)`` (the negative of the dual objective's potential part)
        plus each regulariser's weighted term.

        f sees ``[T(x); y; every regulariser's extra points]`` in one call (one forward, one
        gradient synchronisation): the potential must be a function of each sample (no batch
        norm).
        """
        with self._autocast(x), torch.no_grad():
            ty = self.map.sample(x, self.potential_samples).flatten(0, 1).float()
        ty.requires_grad_(any(r.needs_map_gradient for r in self.regularizers))
        extra = [r.points(ty, y) for r in self.regularizers]
        parts = [ty, y, *(p for p in extra if p is not None)]
        with self._autocast(x):
            values = self._trained["potential"](torch.cat(parts)).float()
        f_ty, f_y, *f_extra = values.split([len(p) for p in parts])
        loss = f_ty.mean() - f_y.mean()
        stats = {"f_y": f_y.mean().detach(), "f_t": f_ty.mean().detach()}
        f_extra = iter(f_extra)
        for regularizer, points in zip(self.regularizers, extra):
            term = regularizer.term(PotentialBatch(
                x, ty, f_ty, y, points, next(f_extra) if points is not None else None, f_y))
            loss = loss + regularizer.weight * term
            stats[regularizer.name] = term.detach()
        return loss, stats

    # -- steps --------------------------------------------------------------------------------
    def _update(self, loss: Tensor, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[p for p in module.parameters() if p.requires_grad])
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
        optimizer.step()

    def map_step(self, x: Tensor) -> dict[str, Tensor]:
        """One gradient step of the map on a source batch ``x``."""
        loss, stats = self.map_loss(x)
        self._update(loss, self.map, self.map_optimizer)
        self._update_ema()
        return {"loss_map": loss.detach(), **stats}

    def potential_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """One gradient step of the potential on a source batch ``x`` and target batch ``y``."""
        loss, stats = self.potential_loss(x, y)
        self._update(loss, self.potential, self.potential_optimizer)
        return {"loss_potential": loss.detach(), **stats}

    def train_step(self, sample_source: SampleFn, sample_target: SampleFn) -> dict[str, Tensor]:
        """One outer step: ``k_map`` map steps (fresh x each), then one potential step.

        ``sample_source()`` and ``sample_target()`` return batches on the solver's device.
        Returns detached scalar tensors (no host synchronisation).
        """
        factor = self.lr_schedule(self.step)
        self.cost.set_step(self.step)
        for group in self.map_optimizer.param_groups:
            group["lr"] = self.lr_map * factor
        for group in self.potential_optimizer.param_groups:
            group["lr"] = self.lr_potential * factor
        for _ in range(self.k_map):
            stats = self.map_step(sample_source())
        stats.update(self.potential_step(sample_source(), sample_target()))
        if hasattr(self.cost, "gamma"):
            stats["gamma"] = torch.tensor(float(self.cost.gamma))
        self.step += 1
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        """After map update t: ``ema_t = (1 - w_t) ema_{t-1} + w_t theta_t`` with
        ``w_t = (1 - d) / (1 - d^t)``, the bias-corrected average
        ``sum_s d^(t-s) theta_s (1 - d) / (1 - d^t)`` of the iterates so far (as Adam corrects
        its moments). Without the correction the initial weights keep a share ``d^t`` of the
        average: a third after 1,100 updates at d = 0.999."""
        if self.ema_map is None:
            return
        self.ema_updates += 1
        weight = (1.0 - self.ema_decay) / (1.0 - self.ema_decay ** self.ema_updates)
        torch._foreach_lerp_(list(self.ema_map.parameters()),
                             [p.detach() for p in self.map.parameters()], weight)
        for ema, b in zip(self.ema_map.buffers(), self.map.buffers()):
            ema.copy_(b)

    @property
    def eval_map(self) -> TransportMap:
        """The map to evaluate and sample with: the EMA copy when there is one."""
        return self.ema_map if self.ema_map is not None else self.map

    # -- state --------------------------------------------------------------------------------
    def training_state(self) -> dict:
        """Everything needed to continue training exactly (weights, optimisers, EMA, step)."""
        return {
            "map": self.map.state_dict(),
            "potential": self.potential.state_dict(),
            "ema_map": None if self.ema_map is None else self.ema_map.state_dict(),
            "ema_updates": self.ema_updates,
            "map_optimizer": self.map_optimizer.state_dict(),
            "potential_optimizer": self.potential_optimizer.state_dict(),
            "step": self.step,
        }

    def load_training_state(self, state: dict) -> None:
        self.map.load_state_dict(state["map"])
        self.potential.load_state_dict(state["potential"])
        if self.ema_map is not None and state.get("ema_map") is not None:
            self.ema_map.load_state_dict(state["ema_map"])
        # files written before the bias correction: count the updates they made
        self.ema_updates = int(state.get("ema_updates", int(state["step"]) * self.k_map))
        self.map_optimizer.load_state_dict(state["map_optimizer"])
        self.potential_optimizer.load_state_dict(state["potential_optimizer"])
        self.step = int(state["step"])
