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
    ``f_ty = f(ty) [B*k]``, the target batch ``y``, and this regulariser's ``points`` with
    ``f_points = f(points)`` (None when it asked for none)."""

    x: Tensor
    ty: Tensor
    f_ty: Tensor
    y: Tensor
    points: Tensor | None = None
    f_points: Tensor | None = None


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


def build_regularizers(gradient_optimality: float, gradient_penalty: float, cost: Cost,
                       embedding: nn.Module) -> list[Regularizer]:
    """The regularisers with a positive weight, in the order their terms are added."""
    out: list[Regularizer] = []
    if gradient_optimality:
        out.append(GradientOptimality(gradient_optimality, cost, embedding))
    if gradient_penalty:
        out.append(GradientPenalty(gradient_penalty))
    return out


__all__ = ["Regularizer", "PotentialBatch", "GradientOptimality", "GradientPenalty",
           "build_regularizers"]
