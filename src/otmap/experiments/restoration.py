"""Held-out evaluation of unpaired restoration and translation maps.

A run's ``test`` spec names images the map never saw (a disjoint part of the dataset). For
restoration they are the ground truth: the inputs are the same images degraded like the source
(fixed seed). For translation (no degradation) they are inputs of the source class, and
``target_class`` asks a held-out classifier where the outputs land. For digit restoration,
``fid`` compares the outputs with the clean test images using otmap's digits features.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from otmap.data.specs import load_dataset
from otmap.errors import InputError
from otmap.metrics import transport_cost
from otmap.model.result import TransportResult
from otmap.viz import plots

#: seed of the test set's degradation, so every evaluation sees the same inputs
TEST_SEED = 1234


class HeldOutSet:
    """Clean test images ``[n, c, h, w]``, their degraded inputs, and the evaluation."""

    def __init__(self, test: dict, source: dict | None) -> None:
        spec = dict(test)
        self.target_class = spec.pop("target_class", None)
        degrade = spec.pop("degrade", None) or (source or {}).get("degrade")
        if "dataset" not in spec:
            raise InputError("test must be an image dataset spec, e.g. {dataset: digits, size: "
                             "16, part: [0.9, 1.0]}")
        self.clean = load_dataset(**spec)
        self.digits = spec["dataset"] == "digits"
        self.inputs = self.clean
        self.degraded = degrade is not None
        if degrade is not None:
            from otmap.data.degradations import build_degradation

            with torch.random.fork_rng():
                torch.manual_seed(TEST_SEED)
                self.inputs = build_degradation(degrade)(self.clean)
        self._classifier = None

    def classifier(self):
        if self._classifier is None:
            from otmap.metrics.features import DigitsFeatures

            self._classifier = DigitsFeatures.load_or_train(size=self.clean.shape[-1])
        return self._classifier

    @torch.no_grad()
    def evaluate(self, result: TransportResult, x: Tensor, y: Tensor) -> dict[str, float]:
        """Test metrics (``x``, ``y``: held-out source and target samples, whose index-wise
        pairing is a random pairing of A with B)."""
        out = result.transport(self.inputs)
        metrics = {"test_transport_cost": transport_cost(self.inputs, out),
                   "random_pairing_cost": transport_cost(x, y)}
        if self.degraded:
            from otmap.metrics.images import psnr, ssim

            metrics.update({"psnr": psnr(out.clamp(-1, 1), self.clean),
                            "ssim": ssim(out.clamp(-1, 1), self.clean),
                            "psnr_input": psnr(self.inputs.clamp(-1, 1), self.clean),
                            "ssim_input": ssim(self.inputs.clamp(-1, 1), self.clean)})
            if result.map.stochastic:
                mean = result.transport(self.inputs, num_samples=8).mean(1)
                metrics["psnr_posterior_mean"] = psnr(mean.clamp(-1, 1), self.clean)
        if self.digits and self.degraded:  # FID (digits features) to the clean test images
            from otmap.metrics.fid import fid

            metrics["fid"] = fid(out.clamp(-1, 1), self.clean, self.classifier())
        if self.target_class is not None:
            classifier = self.classifier()
            predicted = classifier.classify(out.clamp(-1, 1)).argmax(1)
            metrics["target_class_share"] = (predicted == self.target_class).float().mean().item()
        return metrics

    def plot(self, result: TransportResult, path: str | Path, title: str, n: int = 8) -> Path:
        """Rows of input | output (| ground truth); several samples for a stochastic map."""
        k = 3 if result.map.stochastic else 1
        inputs = self.inputs[:n]
        outs = result.transport(inputs, num_samples=k)
        cols = [inputs.unsqueeze(1), outs] + ([self.clean[:n].unsqueeze(1)]
                                              if self.degraded else [])
        grid = torch.cat(cols, dim=1)
        label = "input | T(x" + (", z) x3" if k > 1 else ")") + (" | truth" if self.degraded
                                                                 else "")
        return plots.plot_image_grid(grid.flatten(0, 1).clamp(-1, 1), path, nrow=grid.shape[1],
                                     title=f"{title}: {label}")
