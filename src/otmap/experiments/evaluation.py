"""Held-out evaluation of the experiments: generation, unpaired restoration and translation.

Generation (``otmap eval``, :func:`evaluate_generator`): FID against real images the map never
saw, in two feature spaces (a learned one, a digit classifier's by default, and an unlearned
one, fixed random features of the pixels), each beside the FID that as many real images score
against the same reference (what a perfect generator would get at this sample size), and, with
a digit classifier, which classes the samples cover with a fair share of them.

Restoration and translation (:class:`HeldOutSet`): a run's ``test`` spec names images the map
never saw (a disjoint part of the dataset). For restoration they are the ground truth: the
inputs are the same images degraded like the source (fixed seed), scored by PSNR and SSIM
(torchmetrics: ``pip install 'otmap[images]'``). For translation (no degradation) they are
inputs of the source class, and ``target_class`` asks a classifier of the test set's dataset
where the outputs land. For digit restoration (``digits`` or ``mnist5k``), ``fid`` compares the
outputs with the clean test images using otmap's digit classifier's features. A stochastic map's
``test_diversity`` is the mean over test inputs and pixels of the variance over z of T(x, z).
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from otmap.data.specs import load_dataset
from otmap.errors import InputError
from otmap.metrics import transport_cost
from otmap.metrics.features import (
    DigitClassifier,
    DigitsFeatures,
    FeatureExtractor,
    MnistFeatures,
    PixelFeatures,
    build_extractor,
)
from otmap.metrics.fid import compute_stats, fid
from otmap.model.result import TransportResult
from otmap.utils.checks import check_int
from otmap.viz import plots

#: seed of the test set's degradation, so every evaluation sees the same inputs
TEST_SEED = 1234
#: draws of z per test input for a stochastic map's diversity and posterior mean
TEST_DRAWS = 8
#: draws of real images (seed 0) whose mean FID to the reference is a generator's yardstick
YARDSTICK_DRAWS = 5
#: a class is covered when its share of the samples is at least this fraction of the uniform one
COVERAGE_FRACTION = 0.25


class HeldOutSet:
    """Clean test images ``[n, c, h, w]``, their degraded inputs, and the evaluation.

    ``target_class`` (translation between classes of one dataset, the test set's) is scored
    as the share of outputs that a classifier of the test set's dataset puts in that class.
    otmap has two such classifiers (classes 0..9; the FID of digit restoration uses their
    features too): :class:`DigitsFeatures` for scikit-learn's digits (``dataset: digits`` at
    size 8, 16 or 32) and :class:`MnistFeatures` for ``dataset: mnist5k`` (any size >= 8;
    it trained on part [0.8, 1] of mnist5k). A test set of another dataset or size with
    ``target_class`` raises :class:`InputError` here, before any training, instead of being
    scored by a classifier that does not know its images: remove ``target_class`` from the
    test spec and the other test metrics are still computed.
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
        self.classifier_type = _classifier_type(spec["dataset"], self.clean.shape[-1])
        self.target_class = _checked_target_class(target_class, spec["dataset"], self.clean,
                                                  self.classifier_type)
        self.inputs = self.clean
        self.degraded = degrade is not None
        if degrade is not None:
            from otmap.data.degradations import build_degradation

            with torch.random.fork_rng():
                torch.manual_seed(TEST_SEED)
                self.inputs = build_degradation(degrade)(self.clean)
        self._classifier: DigitClassifier | None = None

    def classifier(self) -> DigitClassifier:
        """otmap's digit classifier of the test set's dataset at its images' size (trained and
        cached on first use); only when there is one (``self.classifier_type``)."""
        if self._classifier is None:
            assert self.classifier_type is not None
            self._classifier = self.classifier_type.load_or_train(size=self.clean.shape[-1])
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
            draws = result.transport(self.inputs, num_samples=TEST_DRAWS)  # [n, draws, ...]
            metrics["test_diversity"] = draws.var(1).mean().item()
            if self.degraded:
                metrics["psnr_posterior_mean"] = psnr(draws.mean(1).clamp(-1, 1), self.clean)
        if self.classifier_type is not None and self.degraded:  # FID to the clean test images
            metrics["fid"] = fid(out.clamp(-1, 1), self.clean, self.classifier())
        if self.target_class is not None:
            classifier = self.classifier()
            predicted = classifier.classify(out.clamp(-1, 1)).argmax(1)
            metrics["target_class_share"] = (predicted == self.target_class).float().mean().item()
        return metrics

    def plot(self, result: TransportResult, path: str | Path, title: str, n: int = 8) -> Path:
        """Rows of input | output (| ground truth) for ``n`` test inputs spread evenly over the
        test set (its parts are drawn per class, so the first rows would all be one class);
        several samples for a stochastic map."""
        k = 3 if result.map.stochastic else 1
        rows = torch.linspace(0, len(self.inputs) - 1, min(n, len(self.inputs))).round().long()
        inputs = self.inputs[rows]
        outs = result.transport(inputs, num_samples=k)
        cols = [inputs.unsqueeze(1), outs] + ([self.clean[rows].unsqueeze(1)]
                                              if self.degraded else [])
        grid = torch.cat(cols, dim=1)
        label = "input | T(x" + (", z) x3" if k > 1 else ")") + (" | truth" if self.degraded
                                                                 else "")
        return plots.plot_image_grid(grid.flatten(0, 1).clamp(-1, 1), path, nrow=grid.shape[1],
                                     title=f"{title}: {label}")


#: a stochastic map whose outputs vary less than this over z (mean pixel variance) ignores z
MIN_DIVERSITY = 1e-6
#: a translation with fewer test outputs in the target class than this has not translated
MIN_TARGET_SHARE = 0.5


def held_out_warnings(metrics: dict[str, float], gamma: float = 0.0) -> list[str]:
    """What the held-out ``metrics`` of :meth:`HeldOutSet.evaluate` say went wrong, as
    messages with a remedy (empty when nothing did). ``gamma``: the weak cost's weight of the
    conditional variance (a stochastic map under ``gamma > 0`` should vary with z)."""
    remedy = ("train longer (train.steps), raise train.k_map or lower the learning rates, "
              "and look at plots/test.png")
    out = []
    if "psnr" in metrics and metrics["psnr"] < metrics["psnr_input"]:
        out.append(f"the restored test images are farther from the truth than the unrestored "
                   f"inputs: PSNR {metrics['psnr']:.2f} dB against {metrics['psnr_input']:.2f} "
                   f"dB (SSIM {metrics['ssim']:.3f} against {metrics['ssim_input']:.3f}); the "
                   f"map changes the images' content, not only the degradation: {remedy}")
    if metrics.get("test_transport_cost", 0.0) >= metrics.get("random_pairing_cost", np.inf):
        out.append(f"the map moves the test inputs farther (cost "
                   f"{metrics['test_transport_cost']:.4g}) than a random pairing of the two "
                   f"sets does ({metrics['random_pairing_cost']:.4g}): it is not a cheap "
                   f"transport: {remedy}")
    if metrics.get("target_class_share", 1.0) < MIN_TARGET_SHARE:
        out.append(f"only {metrics['target_class_share']:.0%} of the translated test images "
                   f"are classified as the target class (at least {MIN_TARGET_SHARE:.0%} "
                   f"expected): the map has not learned the translation: {remedy}")
    if gamma > 0 and metrics.get("test_diversity", np.inf) < MIN_DIVERSITY:
        out.append(f"the stochastic map ignores its noise z (mean pixel variance over z "
                   f"{metrics['test_diversity']:.2g}) under a weak cost with gamma {gamma:g}: "
                   f"it is deterministic in effect; train longer, or raise the noise's scale "
                   f"(map.noise.noise_std)")
    return out


def _require_image_metrics() -> None:
    """InputError naming the extra when torchmetrics (PSNR, SSIM) is missing: before
    training rather than at its first evaluation."""
    try:
        import torchmetrics  # noqa: F401
    except ImportError:
        raise InputError("restoration test sets are scored with PSNR and SSIM from torchmetrics, "
                         "which is not installed: pip install 'otmap[images]' (or pip install "
                         "'torchmetrics>=1.0')") from None


def _classifier_type(dataset: str, size: int) -> type[DigitClassifier] | None:
    """otmap's classifier of ``dataset`` images of ``size`` (:class:`DigitsFeatures` for
    digits at 8, 16 or 32; :class:`MnistFeatures` for mnist5k at 8 or more), else None."""
    if dataset == "digits" and size in DigitsFeatures.SIZES:
        return DigitsFeatures
    if dataset == "mnist5k" and size >= MnistFeatures.MIN_SIZE:
        return MnistFeatures
    return None


def _checked_target_class(value: object, dataset: str, images: Tensor,
                          classifier: type[DigitClassifier] | None) -> int | None:
    """The test spec's ``target_class`` when otmap has a ``classifier`` that scores outputs
    like ``images`` (of ``dataset``), else an InputError saying what to configure."""
    if value is None:
        return None
    if dataset not in ("digits", "mnist5k"):
        raise InputError(
            f"test.target_class is scored by otmap's digit classifiers (dataset: digits or "
            f"mnist5k), and otmap has no classifier for {dataset} images: remove target_class "
            "from the test spec (the other test metrics need no classifier)")
    if classifier is None:
        size = images.shape[-1]
        sizes = ("size 8, 16 or 32" if dataset == "digits"
                 else f"sizes of {MnistFeatures.MIN_SIZE} or more")
        raise InputError(
            f"test.target_class: the test images are {size}x{size}, but otmap's {dataset} "
            f"classifier is trained at {sizes}: use one of these sizes in the source, target "
            "and test specs, or remove target_class from the test spec")
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


def _learned_extractor(features: str, dataset: str, size: int,
                       **kwargs: object) -> FeatureExtractor:
    """The learned feature space of :func:`evaluate_generator`: ``"digits"`` (the default) is
    otmap's digit classifier of the target's ``dataset`` at the images' ``size``
    (:class:`MnistFeatures` for mnist5k, else :class:`DigitsFeatures`), ``"mnist5k"`` the
    former at any dataset; other names go to :func:`build_extractor` with ``kwargs``."""
    if features == "digits" and dataset == "mnist5k":
        features = "mnist5k"
    if features in ("digits", "mnist5k"):
        kwargs.setdefault("size", size)
    return build_extractor(features, **kwargs)


def _reference_part(target: dict, reference_part: tuple[float, float] | None) -> list[float]:
    """The part of the target's dataset to compare with: ``reference_part`` (checked) or the
    part training did not use (:func:`held_out_spec`)."""
    if reference_part is None:
        return held_out_spec(target)["part"]
    part = list(reference_part)
    if len(part) != 2 or not all(isinstance(v, numbers.Real) for v in part) or not (
            0 <= part[0] < part[1] <= 1):
        raise InputError(f"the reference part must be START, END with 0 <= START < END <= 1, "
                         f"got {reference_part!r}: pass e.g. --reference-part 0.8,1")
    return [float(v) for v in part]


def _real_draws(target: dict, part: list[float], n: int) -> tuple[Tensor, list[Tensor]]:
    """The real images of the target's dataset outside ``part`` (parts ``[0, start]`` and
    ``[end, 1]``, disjoint from it) and :data:`YARDSTICK_DRAWS` seeded draws of ``n`` indices
    into them."""
    spec = {k: v for k, v in target.items() if k != "part"}
    pool = [load_dataset(**spec, part=p) for p in ([0.0, part[0]], [part[1], 1.0]) if p[0] < p[1]]
    available = sum(len(images) for images in pool)
    if available < n:
        fewer = f"n at most {available} (otmap eval --n {available}) or " if available > 1 else ""
        raise InputError(
            f"the FID yardstick scores {n} real images that are not in the reference (as many "
            f"as the samples), and the dataset has {available} outside reference part {part}: "
            f"pass {fewer}a smaller reference part (--reference-part)")
    images = torch.cat(pool)
    generator = torch.Generator().manual_seed(0)
    return images, [torch.randperm(len(images), generator=generator)[:n]
                    for _ in range(YARDSTICK_DRAWS)]


def _scores(samples: Tensor, reference: Tensor, real: Tensor, draws: list[Tensor],
            space: FeatureExtractor) -> dict[str, float]:
    """FID of ``samples`` to ``reference`` in ``space`` (key ``""``), the mean and spread over
    the ``draws`` (indices into ``real``) of their FID to it (``_real``,
    ``_real_std``), and the ratio of the first to that mean (``_ratio``)."""
    ref = compute_stats(reference, space)
    score = compute_stats(samples, space).fid(ref)
    yardstick = np.array([compute_stats(real[draw], space).fid(ref) for draw in draws])
    return {"": score, "_real": float(yardstick.mean()),
            "_real_std": float(yardstick.std(ddof=1)),
            "_ratio": score / float(yardstick.mean())}


def _coverage(classes: Tensor, num_classes: int, uniform_over: int) -> dict:
    """``class_counts`` of the predicted ``classes [n]`` (``num_classes`` of them),
    ``coverage_min_share`` (:data:`COVERAGE_FRACTION` of ``1 / uniform_over``) and
    ``classes_covered``, the number of classes with at least that share of the samples."""
    counts = torch.bincount(classes, minlength=num_classes)
    covered = counts * uniform_over >= COVERAGE_FRACTION * len(classes)  # share >= min share
    return {"classes_covered": int(covered.sum()), "class_counts": counts.tolist(),
            "coverage_min_share": COVERAGE_FRACTION / uniform_over}


def evaluate_generator(result: TransportResult, n: int = 1000, features: str = "digits",
                       reference_part: tuple[float, float] | None = None,
                       **feature_kwargs) -> dict:
    """Held-out scores of ``n`` samples of a generator, in the learned feature space
    ``features`` (keys ``fid...``; see :func:`_learned_extractor`) and in fixed random pixel
    features (:class:`PixelFeatures`, keys ``fid_pixels...``).

    ``fid``: FID of the samples to the reference, the real images of ``reference_part`` of the
    target's dataset (default: the part training did not use), ``n_reference`` of them.
    ``fid_real``: the yardstick, the mean FID to the same reference of ``n_real = n`` real
    images outside it, over ``real_draws`` (:data:`YARDSTICK_DRAWS`) seeded draws, so that both
    sides of both FIDs have the same sizes (FID is biased upward for fewer samples; earlier
    versions compared two halves of the whole set, ``fid_real_halves``, which made the ratio
    unfair). ``fid_real_std``: its spread over the draws, about the sampling noise of ``fid``
    itself. ``fid_ratio = fid / fid_real``: ~1 is as close as real data gets. ``n`` may not
    exceed the real images outside the reference.

    With a digit classifier as ``features``: ``class_counts`` (samples per predicted class),
    ``classes_covered``, the classes with a share of the samples of at least
    ``coverage_min_share``, :data:`COVERAGE_FRACTION` of the uniform share ``1 / K``, ``K`` the
    number of the target's ``classes`` (all ten without them), so that a few stray samples
    do not count as covering a class; and ``classifier_accuracy``.
    """
    target = result.config.get("target")
    if not (isinstance(target, dict) and "dataset" in target):
        raise InputError("otmap eval --fid needs a run whose target is an image dataset spec")
    n = check_int("the number of samples n", n, 2, fix="pass e.g. otmap eval --n 1000")
    part = _reference_part(target, reference_part)
    reference = load_dataset(**{**target, "part": part})
    real, draws = _real_draws(target, part, n)
    samples = result.sample(n).clamp(-1, 1)  # first: building an extractor draws from torch's RNG
    extractor = _learned_extractor(features, target["dataset"], reference.shape[-1],
                                   **feature_kwargs)
    pixels = PixelFeatures()
    out = {"n_samples": n, "n_reference": len(reference), "n_real": n,
           "real_draws": len(draws), "features": extractor.name, "features_pixels": pixels.name}
    for key, space in (("fid", extractor), ("fid_pixels", pixels)):
        scores = _scores(samples, reference, real, draws, space)
        out.update({key + suffix: value for suffix, value in scores.items()})
    if isinstance(extractor, DigitClassifier):
        with torch.no_grad():
            logits = extractor.classify(samples.to(extractor.device))
        num_classes = logits.shape[1]
        uniform_over = len(target["classes"]) if target.get("classes") else num_classes
        out.update(_coverage(logits.argmax(1).cpu(), num_classes, uniform_over))
        out["classifier_accuracy"] = extractor.accuracy
    return out
