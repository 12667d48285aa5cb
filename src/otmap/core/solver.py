"""The one saddle-point solver behind OTM, NOT and KNOT.

With source samples x, target samples y, noise z, an embedding Q, a map T and a potential f:

    L(f, T) = E_y f(y) + E_x [ C(Q(x), T(x, .)#S) - E_z f(T(x, z)) ],    sup_f inf_T L(f, T).

* map step (``k_map`` per potential step): minimise
  ``E_x[C_hat(Q(x), {T(x, z_k)}) - mean_k f(T(x, z_k))]``;
* potential step: minimise ``E_x f(T(x, z)) - E_y f(y)`` (plus regularisers).

A deterministic map is the case ``K = 1`` without z.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from otmap.core.costs import Cost
from otmap.core.maps import TransportMap
from otmap.core.schedules import Constant, Schedule
from otmap.errors import InputError

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


class NeuralOT(nn.Module):
    """Holds the two players, their optimisers and the EMA of the map.

    Args:
        transport_map: the map T (``sample(x, k) -> [B, k, *dims]``).
        potential: the potential ``f([N, *dims]) -> [N]``.
        cost: the cost estimator (sees ``embedding(x)``).
        embedding: the fixed Q for unequal dimensions (identity when None).
        k_map: map steps per potential step.
        num_samples: K, samples ``T(x, z_k)`` per input in the map step.
        potential_samples: samples per input in the potential step (1 as in the reference
            code, or K).
        lr_map, lr_potential: Adam learning rates; ``betas``: Adam betas for both.
        weight_decay: Adam's L2 weight decay, for both players.
        lr_schedule: multiplier ``step -> factor`` of both learning rates (step = outer step).
        ema_decay: keep an exponential moving average of the map's weights (None: no EMA).
        grad_clip: clip each player's gradient norm to this value (None: no clipping).
        gradient_optimality: weight of OTM's gradient-optimality term in the potential loss,
            ``|| mean_b grad f(T(x_b)) - mean_b grad_y c(Q(x_b), y)|_{y=T(x_b)} ||``: at an
            optimal map each T(x) is a stationary point of ``c(Q(x), .) - f``. (The reference
            code compares with ``Q(x)`` and mis-scales by D; this form holds for every strong
            cost.) Under torchrun each process takes the norm of its own batch's means, so N
            processes estimate it from N smaller batches.
        gradient_penalty: weight of a WGAN-style penalty ``mean_b (|grad f(y_hat_b)| - 1)^2``
            on interpolates ``y_hat = eta y + (1 - eta) T(x)``, ``eta ~ U(0, 1)`` per sample
            (OTM-GP; the gradient is per sample, not of the batch mean).
        autocast_dtype: run the networks under ``torch.autocast`` in this dtype (e.g.
            ``torch.bfloat16``); costs and losses stay in float32. None: float32 throughout.
    """

    def __init__(self, transport_map: TransportMap, potential: nn.Module, cost: Cost, *,
                 embedding: nn.Module | None = None, k_map: int = 5, num_samples: int = 1,
                 potential_samples: int = 1,
                 lr_map: float = 1e-3, lr_potential: float = 1e-3,
                 betas: tuple[float, float] = (0.5, 0.9), weight_decay: float = 0.0,
                 lr_schedule: Schedule | None = None, ema_decay: float | None = None,
                 grad_clip: float | None = None, gradient_optimality: float = 0.0,
                 gradient_penalty: float = 0.0,
                 autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if k_map < 1:
            raise InputError(f"k_map must be >= 1, got {k_map}")
        if num_samples < cost.min_samples:
            raise InputError(f"{cost!r} needs num_samples >= {cost.min_samples}, got {num_samples}")
        if not transport_map.stochastic and max(num_samples, potential_samples) != 1:
            raise InputError("a deterministic map takes num_samples=1 and potential_samples=1; "
                             "a weak cost needs a StochasticMap")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in potential.modules()):
            raise InputError("the potential has batch normalisation, so f(y) would depend on "
                             "the other samples of its batch: use norm='none', 'instance' or "
                             "'group' (OT potentials are functions of one sample)")
        if gradient_optimality and cost.min_samples > 1:
            raise InputError("gradient_optimality is OTM's stationarity condition for strong "
                             f"costs; {type(cost).__name__} is a weak cost: use "
                             "gradient_penalty instead")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise InputError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        self.map = transport_map
        self.potential = potential
        self.embedding = embedding if embedding is not None else nn.Identity()
        self.embedding.requires_grad_(False)
        self.cost = cost
        self.k_map, self.num_samples = k_map, num_samples
        self.potential_samples = potential_samples
        self.lr_map, self.lr_potential = lr_map, lr_potential
        self.lr_schedule = lr_schedule or Constant(1.0)
        self.ema_decay, self.grad_clip = ema_decay, grad_clip
        self.gradient_optimality, self.gradient_penalty = gradient_optimality, gradient_penalty
        self.map_optimizer = _adam(self.map, lr=lr_map, betas=betas, weight_decay=weight_decay)
        self.potential_optimizer = _adam(self.potential, lr=lr_potential, betas=betas,
                                         weight_decay=weight_decay)
        self.ema_map = copy.deepcopy(transport_map).requires_grad_(False) if ema_decay else None
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
        plus the enabled regularisers.

        f sees ``[T(x); y; interpolates]`` in one call (one forward, one gradient
        synchronisation): the potential must be a function of each sample (no batch norm).
        """
        with self._autocast(x), torch.no_grad():
            ty = self.map.sample(x, self.potential_samples).flatten(0, 1).float()
        parts = [ty.requires_grad_(bool(self.gradient_optimality)), y]
        if self.gradient_penalty:
            n = min(len(y), len(ty))
            eta = torch.rand(n, *([1] * (y.dim() - 1)), device=y.device, dtype=y.dtype)
            parts.append((eta * y[:n] + (1 - eta) * ty[:n].detach()).requires_grad_(True))
        with self._autocast(x):
            values = self._trained["potential"](torch.cat(parts)).float()
        values = values.split([len(p) for p in parts])
        f_t, f_y = values[0].mean(), values[1].mean()
        loss, stats = f_t - f_y, {"f_y": f_y.detach(), "f_t": f_t.detach()}
        if self.gradient_optimality:
            go = self.gradient_optimality_term(x, ty, values[0])
            loss, stats["gradient_optimality"] = loss + self.gradient_optimality * go, go.detach()
        if self.gradient_penalty:
            gp = self.gradient_penalty_term(parts[-1], values[-1])
            loss, stats["gradient_penalty"] = loss + self.gradient_penalty * gp, gp.detach()
        return loss, stats

    def gradient_optimality_term(self, x: Tensor, ty: Tensor, f_ty: Tensor) -> Tensor:
        """``|| mean_b grad f(T(x_b)) - mean_b grad_y c(Q(x_b), T(x_b)) ||`` (differentiable in
        f's parameters; ``ty`` (requiring grad) holds one T(x) per x, or K per x in order, and
        ``f_ty = f(ty)``)."""
        k = ty.shape[0] // x.shape[0]
        with torch.no_grad():
            qx = self.embedding(x).repeat_interleave(k, dim=0)
        y = ty.detach().requires_grad_(True)
        grad_c = torch.autograd.grad(self.cost(qx, y.unsqueeze(1)).sum(), y)[0]
        grad_f = torch.autograd.grad(f_ty.sum(), ty, create_graph=True)[0]
        return (grad_f.mean(0) - grad_c.mean(0)).norm()

    @staticmethod
    def gradient_penalty_term(y_hat: Tensor, f_y_hat: Tensor) -> Tensor:
        """``mean_b (|grad f(y_hat)|_b - 1)^2`` with per-sample gradients, at interpolates
        ``y_hat = eta y + (1 - eta) T(x)`` (requiring grad) and ``f_y_hat = f(y_hat)``."""
        grad = torch.autograd.grad(f_y_hat.sum(), y_hat, create_graph=True)[0]
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

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
        if self.ema_map is None:
            return
        torch._foreach_lerp_(list(self.ema_map.parameters()),
                             [p.detach() for p in self.map.parameters()], 1.0 - self.ema_decay)
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
            "map_optimizer": self.map_optimizer.state_dict(),
            "potential_optimizer": self.potential_optimizer.state_dict(),
            "step": self.step,
        }

    def load_training_state(self, state: dict) -> None:
        self.map.load_state_dict(state["map"])
        self.potential.load_state_dict(state["potential"])
        if self.ema_map is not None and state.get("ema_map") is not None:
            self.ema_map.load_state_dict(state["ema_map"])
        self.map_optimizer.load_state_dict(state["map_optimizer"])
        self.potential_optimizer.load_state_dict(state["potential_optimizer"])
        self.step = int(state["step"])
