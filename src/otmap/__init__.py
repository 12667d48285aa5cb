"""otmap: neural optimal transport maps (OTM, NOT, KNOT) with PyTorch.

    import otmap
    result = otmap.fit(source, target)   # tensors, samplers or callables n -> Tensor
    y = result.transport(x)
    result.save("map.pt"); result = otmap.load("map.pt")

The layers, lowest first (a module imports only from its own layer or lower ones):
``errors``/``utils`` < ``core`` (costs, maps, embeddings, schedules, regularizers, solver) <
``data``, ``nets``, ``metrics``, ``benchmarks``, ``viz`` < ``model`` (result, checkpoint) <
``train`` (configuration, runtime, trainer, fit) < ``experiments`` (recipes, runner, sweep,
evaluators, apply, speed) < ``cli``. See docs/architecture.md.
"""

from __future__ import annotations

from otmap._version import __version__
from otmap.core.costs import (
    Cost,
    FromCallable,
    InnerProduct,
    StrongQuadratic,
    WeakKernel,
    WeakQuadratic,
)
from otmap.core.maps import DeterministicMap, StochasticMap, TransportMap
from otmap.core.solver import NeuralOT
from otmap.errors import (
    CheckpointError,
    InputError,
    OTMapError,
    QualityWarning,
    TrainingDivergedError,
    TrainingInterrupted,
)
from otmap.model.result import TransportResult, load
from otmap.train.config import TrainConfig
from otmap.train.fit import fit, prepare

__all__ = [
    "__version__", "fit", "prepare", "load", "TransportResult", "TrainConfig", "NeuralOT",
    "Cost", "StrongQuadratic", "InnerProduct", "WeakQuadratic", "WeakKernel", "FromCallable",
    "TransportMap", "DeterministicMap", "StochasticMap",
    "OTMapError", "InputError", "CheckpointError", "TrainingDivergedError",
    "TrainingInterrupted", "QualityWarning",
]
