"""Data: samplers over tensors, datasets and callables, and seeded toy distributions."""

from __future__ import annotations

from otmap.data.samplers import (
    CallableSampler,
    DatasetSampler,
    Sampler,
    TensorSampler,
    as_sampler,
    check_samples,
    sample_shape,
)
from otmap.data.toy import TOY_DATASETS, ToySampler, toy

__all__ = [
    "Sampler",
    "TensorSampler",
    "CallableSampler",
    "DatasetSampler",
    "as_sampler",
    "check_samples",
    "sample_shape",
    "ToySampler",
    "toy",
    "TOY_DATASETS",
]
