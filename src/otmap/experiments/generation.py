"""Held-out evaluation of trained generative maps (``otmap eval``): FID against real images
the map never saw, the FID between two disjoint halves of the real data as the yardstick,
and, with the digits classifier, which classes the samples cover."""

from __future__ import annotations

import torch

from otmap.data.specs import load_dataset
from otmap.errors import InputError
from otmap.metrics.features import DigitsFeatures, build_extractor
from otmap.metrics.fid import fid
from otmap.model.result import TransportResult


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
