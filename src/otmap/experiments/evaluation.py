"""Held-out evaluation of the experiments: generation, unpaired restoration and translation.

Generation (``otmap eval``, :func:`evaluate_generator`): FID against real images the map never
saw, the FID between two disjoint halves of the real data as the yardstick, and, with the
digits classifier, which classes the samples cover.

Restoration and translation (:class:`HeldOutSet`): a run's ``test`` spec names images the map
never saw (a disjoint part of the dataset). For restoration they are the ground truth: the
inputs are the same images degraded like the source (fixed seed), scored by PSNR and SSIM
(torchmetrics: ``pip install 'otmap[images]'``). For translation (no degradation) they are
inputs of the source class, and ``target_class`` asks a classifier of the test set's dataset
where the outputs land. For digit restoration, ``fid`` compares the outputs with the clean
test images using otmap's digits features.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from otmap.data.specs import load_dataset
from otmap.errors import InputError
from otmap.metrics import transport_cost
from otmap.metrics.features import DigitsFeatures, build_extractor
from otmap.metrics.fid import fid
from otmap.model.result import TransportResult
from otmap.viz import plots

#: seed of the test set's degradation, so every evaluation sees the same inputs
TEST_SEED = 1234
#: image sizes at which otmap's digits classifier (:class:`DigitsFeatures`) is trained
DIGITS_CLASSIFIER_SIZES = (8, 16, 32)


class HeldOutSet:
    """Clean test images ``[n, c, h, w]``, their degraded inputs, and the evaluation.

    ``target_class`` (translation between classes of one dataset, the test set's) is scored
    as the share of outputs that a classifier of the test set's dataset puts in that class.
    otmap has one such classifier, for scikit-learn's digits (``dataset: digits`` at size 8,
    16 or 32, classes 0..9; the FID of digit restoration uses its features too). A test set
    of another dataset or size with ``target_class`` raises :class:`InputError` here, before
    any training, instead of being scored by a classifier that does not know its images:
    remove ``target_class`` from the test spec and the other test metrics are still computed.
    A degraded (restoration) test set without torchmetrics installed raises too.
    """

    def __init__(self, test: dict, source: dict | None) -> None:
        spec = dict(test)
        target_class = spec.pop("target_class", None)
        degrade = spec.pop("degrade", None) or (source or {}).get("degrade")
        if "dataset" not in spec:
            raise InputError("test must be an image dataset spec, e.g. {dataset: digits, size: "
                             "16, part: [0.9, 1.0]}")
        if degrade is not None:
            _require_image_metrics()
        self.clean = load_dataset(**spec)
        self.digits = (spec["dataset"] == "digits"
                       and self.clean.shape[-1] in DIGITS_CLASSIFIER_SIZES)
        self.target_class = _checked_target_class(target_class, spec["dataset"], self.clean)
        self.inputs = self.clean
        self.degraded = degrade is not None
        if degrade is not None:
            from otmap.data.degradations import build_degradation

            with torch.random.fork_rng():
                torch.manual_seed(TEST_SEED)
                self.inputs = build_degradation(degrade)(self.clean)
        self._classifier: DigitsFeatures | None = None

    def classifier(self) -> DigitsFeatures:
        """otmap's digits classifier at the test images' size (trained and cached on first
        use); only for a digits test set (``self.digits``)."""
        if self._classifier is None:
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


def _require_image_metrics() -> None:
    """InputError naming the extra when torchmetrics (PSNR, SSIM) is missing: before
    training rather than at its first evaluation."""
    try:
        import torchmetrics  # noqa: F401
    except ImportError:
        raise InputError("restoration test sets are scored with PSNR and SSIM from torchmetrics, "
                         "which is not installed: pip install 'otmap[images]' (or pip install "
                         "'torchmetrics>=1.0')") from None


def _checked_target_class(value: object, dataset: str, images: Tensor) -> int | None:
    """The test spec's ``target_class`` when otmap's digits classifier can score outputs
    like ``images`` (of ``dataset``), else an InputError saying what to configure."""
    if value is None:
        return None
    if dataset != "digits":
        raise InputError(
            f"test.target_class is scored by otmap's digits classifier (dataset: digits), and "
            f"otmap has no classifier for {dataset} images: remove target_class from the test "
            "spec (the other test metrics need no classifier)")
    size = images.shape[-1]
    if size not in DIGITS_CLASSIFIER_SIZES:
        raise InputError(
            f"test.target_class: the test images are {size}x{size}, but otmap's digits "
            "classifier is trained at size 8, 16 or 32: use one of these sizes in the source, "
            "target and test specs, or remove target_class from the test spec")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise InputError(f"test.target_class must be a digit 0..9, got {value!r}")
    return value


def held_out_spec(target: dict) -> dict:
    """The part of a dataset spec that training did not use: ``part [0, b] -> [b, 1]``."""
    part = target.get("part")
    if part is None or float(part[0]) != 0.0 or float(part[1]) >= 1.0:
        raise InputError("held-out evaluation needs a target spec trained on part [0, b] with "
                         "b < 1 (e.g. part: [0.0, 0.8]); pass --reference-part START,END")
    return {**target, "part": [float(part[1]), 1.0]}


def evaluate_generator(result: TransportResult, n: int = 1000, features: str = "digits",
                       reference_part: tuple[float, float] | None = None,
                       **feature_kwargs) -> dict:
    """FID of ``n`` samples to held-out real images, the real-vs-real FID of two disjoint halves
    of the whole dataset, and class coverage (digits features)."""
    target = result.config.get("target")
    if not (isinstance(target, dict) and "dataset" in target):
        raise InputError("otmap eval --fid needs a run whose target is an image dataset spec")
    spec = ({**target, "part": list(reference_part)} if reference_part is not None
            else held_out_spec(target))
    reference = load_dataset(**spec)
    if features == "digits":
        feature_kwargs.setdefault("size", reference.shape[-1])
        extractor = DigitsFeatures.load_or_train(**feature_kwargs)
    else:
        extractor = build_extractor(features, **feature_kwargs)
    samples = result.sample(n).clamp(-1, 1)
    everything = load_dataset(**{k: v for k, v in target.items() if k != "part"})
    order = torch.randperm(len(everything), generator=torch.Generator().manual_seed(0))
    half_a, half_b = everything[order[: len(order) // 2]], everything[order[len(order) // 2:]]
    out = {"n_samples": n, "n_reference": len(reference), "features": extractor.name,
           "fid": fid(samples, reference, extractor),
           "fid_real_halves": fid(half_a, half_b, extractor)}
    out["fid_ratio"] = out["fid"] / out["fid_real_halves"]
    if isinstance(extractor, DigitsFeatures):
        with torch.no_grad():
            classes = extractor.classify(samples.to(extractor.device)).argmax(1).cpu()
        counts = torch.bincount(classes, minlength=10)
        out.update({"classes_covered": int((counts > 0).sum()),
                    "class_counts": counts.tolist(),
                    "classifier_accuracy": extractor.accuracy})
    return out
