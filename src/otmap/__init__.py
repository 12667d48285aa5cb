"""otmap: neural optimal transport maps (OTM, NOT, KNOT) with PyTorch.

    import otmap
    result = otmap.fit(source, target)   # tensors, samplers or callables n -> Tensor
    y = result.transport(x)
    result.save("map.pt"); result = otmap.load("map.pt")
"""

from __future__ import annotations

__version__ = "0.1.0"

from otmap.api import fit, prepare  # noqa: E402
from otmap.config import RunConfig, TrainConfig  # noqa: E402
from otmap.costs import Cost, FromCallable, InnerProduct, StrongQuadratic  # noqa: E402
from otmap.errors import (  # noqa: E402
    CheckpointError,
    InputError,
    OTMapError,
    TrainingDivergedError,
    TrainingInterrupted,
)
from otmap.maps import DeterministicMap, TransportMap  # noqa: E402
from otmap.result import TransportResult, load  # noqa: E402
from otmap.solver import NeuralOT  # noqa: E402

__all__ = [
    "fit", "prepare", "load", "TransportResult", "NeuralOT", "TrainConfig", "RunConfig",
    "Cost", "StrongQuadratic", "InnerProduct", "FromCallable",
    "TransportMap", "DeterministicMap",
    "OTMapError", "InputError", "CheckpointError", "TrainingDivergedError",
    "TrainingInterrupted",
]
