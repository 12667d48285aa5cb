"""Regularisers of the potential step: terms ``weight * term`` added to its loss, each an
object the solver iterates over.

* :class:`GradientOptimality` (OTM):
  ``|| mean_b grad f(T(x_b)) - mean_b grad_y c(Q(x_b), y)|_{y=T(x_b)} ||``; at an optimal
  map each T(x) is a stationary point of ``c(Q(x), .) - f``. (The reference code compares
  with ``Q(x)`` and mis-scales by D; this form holds for every strong cost.)
  Under torchrun each process takes the norm of its own batch's means.
* :class:`GradientPenalty` (OTM-GP, WGAN-GP style): ``mean_b (|grad f(y_hat_b)| - 1)^2`` at
  interpolates ``y_hat = eta y + (1 - eta) T(x)``, ``eta ~ U(0, 1)`` per sample (the gradient is
  per sample, not of the batch mean).
* :class:`ExpectileRegularizer` (ENOT, Buzun et al. 2024): on pairs ``(x_b, y_b)`` of the two
  batches, the conjugate estimate ``f^c(x) = c(Q(x), T(x)) - f(T(x))`` (T frozen) must satisfy
  ``f^c(x) + f(y) <= c(Q(x), y)``; the term is the expectile loss
  ``mean_b L_tau(delta_b) / s`` of ``delta_b = f^c(x_b) + f(y_b) - c(Q(x_b), y_b)``,
  ``L_tau(u) = |tau - 1[u < 0]| u^2``, with ``s`` the target batch's mean coordinate variance
  (detached), so the weight does not change with the data's scale. It binds f to the map, so
  one map update per potential update suffices.

A regulariser may ask for extra points where f is evaluated (:meth:`Regularizer.points`): the
solver evaluates f once on ``[T(x); y; every regulariser's points]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from otmap.core.costs import Cost
from otmap.errors import InputError


@dataclass
class PotentialBatch:
    """What one potential step computed: source batch ``x [B, *in_dims]``, map outputs
    ``ty [B*k, *dims]`` (requiring grad when a regulariser differentiates f there),
    ``f_ty = f(ty) [B*k]``, the target batch ``y``, this regulariser's ``points`` with
    ``f_points = f(points)`` (None when it asked for none), and ``f_y = f(y) [B]``."""

    x: Tensor
    ty: Tensor
    f_ty: Tensor
    y: Tensor
    points: Tensor | None = None
    f_points: Tensor | None = None
    f_y: Tensor | None = None


class Regularizer:
    """A weighted term of the potential loss, logged under :attr:`name`."""

    name: str = "regularizer"
    #: whether :meth:`term` differentiates f at ``ty`` (the solver then makes ``ty`` require
    #: grad before evaluating f)
    needs_map_gradient: bool = False

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)

    def points(self, ty: Tensor, y: Tensor) -> Tensor | None:
        """Extra points (requiring grad) where f must be evaluated, or None."""
        return None

    def term(self, batch: PotentialBatch) -> Tensor:
        """The unweighted scalar term, differentiable in f's parameters."""
        raise NotImplementedError


class GradientOptimality(Regularizer):
    """OTM's gradient-optimality condition for a strong ``cost`` seen through ``embedding``."""

    name = "gradient_optimality"
    needs_map_gradient = True

    def __init__(self, weight: float, cost: Cost, embedding: nn.Module) -> None:
        if cost.min_samples > 1:
            raise InputError("gradient_optimality is OTM's stationarity condition for strong "
                             f"costs; {type(cost).__name__} is a weak cost: use "
                             "gradient_penalty instead")
        super().__init__(weight)
        self.cost, self.embedding = cost, embedding

    def term(self, batch: PotentialBatch) -> Tensor:
        """``|| mean_b grad f(T(x_b)) - mean_b grad_y c(Q(x_b), T(x_b)) ||``; ``ty`` holds one
        T(x) per x, or K per x in order."""
        k = batch.ty.shape[0] // batch.x.shape[0]
        with torch.no_grad():
            qx = self.embedding(batch.x).repeat_interleave(k, dim=0)
        y = batch.ty.detach().requires_grad_(True)
        grad_c = torch.autograd.grad(self.cost(qx, y.unsqueeze(1)).sum(), y)[0]
        grad_f = torch.autograd.grad(batch.f_ty.sum(), batch.ty, create_graph=True)[0]
        return (grad_f.mean(0) - grad_c.mean(0)).norm()


class GradientPenalty(Regularizer):
    """WGAN-GP's penalty on interpolates between target samples and map outputs."""

    name = "gradient_penalty"

    def points(self, ty: Tensor, y: Tensor) -> Tensor:
        n = min(len(y), len(ty))
        eta = torch.rand(n, *([1] * (y.dim() - 1)), device=y.device, dtype=y.dtype)
        return (eta * y[:n] + (1 - eta) * ty[:n].detach()).requires_grad_(True)

    def term(self, batch: PotentialBatch) -> Tensor:
        """``mean_b (|grad f(y_hat)|_b - 1)^2`` with per-sample gradients."""
        grad = torch.autograd.grad(batch.f_points.sum(), batch.points, create_graph=True)[0]
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class ExpectileRegularizer(Regularizer):
    """ENOT's expectile regulariser of the c-transform for a strong ``cost`` (module docstring).

    ``tau`` in (0.5, 1): how much more a violation ``delta > 0`` weighs than a slack
    ``delta < 0`` (0.99: 99 to 1).
    """

    name = "expectile"

    def __init__(self, weight: float, cost: Cost, embedding: nn.Module, tau: float = 0.99) -> None:
        if cost.min_samples > 1:
            raise InputError("expectile regularises the c-transform of a strong cost; "
                             f"{type(cost).__name__} is a weak cost: use gradient_penalty instead")
        if not 0.5 < tau < 1:
            raise InputError(f"train.expectile_tau must be in (0.5, 1) such as 0.99, got {tau!r}")
        super().__init__(weight)
        self.cost, self.embedding, self.tau = cost, embedding, float(tau)

    def residual(self, batch: PotentialBatch) -> Tensor:
        """``delta [n] = c(Q(x_b), T(x_b)) - f(T(x_b)) + f(y_b) - c(Q(x_b), y_b)`` over the first
        ``n = min(B_x, B_y)`` pairs (<= 0 when T(x) minimises ``c(Q(x), .) - f``); ``ty``
        holds one T(x) per x (K per x: the first of each)."""
        k = batch.ty.shape[0] // batch.x.shape[0]
        n = min(len(batch.x), len(batch.y))
        ty, f_ty = batch.ty.detach()[::k][:n], batch.f_ty[::k][:n]
        with torch.no_grad():
            qx = self.embedding(batch.x[:n])
            slack = self.cost(qx, ty.unsqueeze(1)) - self.cost(qx, batch.y[:n].unsqueeze(1))
        return slack - f_ty + batch.f_y[:n]

    def term(self, batch: PotentialBatch) -> Tensor:
        """``mean_b L_tau(delta_b) / s``, s the target batch's mean coordinate variance."""
        delta = self.residual(batch)
        y = batch.y.flatten(1).float()
        scale = y.var(0).mean().clamp_min(1e-12) if len(y) > 1 else 1.0
        weight = torch.where(delta >= 0, self.tau, 1.0 - self.tau)
        return (weight * delta.square()).mean() / scale


def build_regularizers(gradient_optimality: float, gradient_penalty: float, cost: Cost,
                       embedding: nn.Module, expectile: float = 0.0,
                       expectile_tau: float = 0.99) -> list[Regularizer]:
    """The regularisers with a positive weight, in the order their terms are added."""
    out: list[Regularizer] = []
    if gradient_optimality:
        out.append(GradientOptimality(gradient_optimality, cost, embedding))
    if gradient_penalty:
        out.append(GradientPenalty(gradient_penalty))
    if expectile:
        out.append(ExpectileRegularizer(expectile, cost, embedding, expectile_tau))
    return out


__all__ = ["Regularizer", "PotentialBatch", "GradientOptimality", "GradientPenalty",
           "ExpectileRegularizer", "build_regularizers"]
