"""The one registry every builder uses: names, aliases, the unknown-name error, bad options,
specs; and every name and alias the builders accepted before still builds the same class."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import otmap
from otmap.benchmarks.brenier import BrenierPair
from otmap.benchmarks.gaussian import GaussianPair
from otmap.benchmarks.registry import PAIRS, benchmark_pair
from otmap.benchmarks.w2b import W2BenchmarkPair
from otmap.core.costs import (
    COSTS,
    InnerProduct,
    StrongQuadratic,
    WeakKernel,
    WeakQuadratic,
    build_cost,
)
from otmap.core.embeddings import (
    EMBEDDINGS,
    GrayToRGB,
    LinearProjection,
    Reshape,
    Upsample,
    build_embedding,
)
from otmap.core.schedules import SCHEDULES, Constant, Cosine, LinearRamp, MultiStep, build_schedule
from otmap.data import TOY_DATASETS, toy
from otmap.data.degradations import (
    DEGRADATIONS,
    Blur,
    Compose,
    Downsample,
    GaussianNoise,
    Grayscale,
    Mask,
    build_degradation,
)
from otmap.data.images import load_cifar10, load_digits, load_mnist
from otmap.data.specs import DATASETS, load_dataset
from otmap.errors import InputError
from otmap.metrics.features import EXTRACTORS, DigitsFeatures, InceptionFeatures, build_extractor
from otmap.nets import (
    NETS,
    CondUNet,
    GradientICNNMap,
    MapMLP,
    PotentialMLP,
    ResNetPotential,
    UNet,
    UpsampleGenerator,
    build_net,
)
from otmap.utils.registry import Registry


def _paint(color: str = "red", width: int = 1) -> tuple[str, int]:
    return color, width


class _Layer(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size


@pytest.fixture
def shapes() -> Registry:
    registry: Registry = Registry("shape", otherwise="pass a callable")
    registry.register("paint", _paint, aliases=("brush", "roller"))

    @registry.register("layer")
    def layer(size: int) -> _Layer:
        return _Layer(size)

    return registry


def test_register_as_call_and_decorator_and_resolve_aliases(shapes):
    assert shapes.get("paint") is _paint and shapes.get("brush") is _paint
    assert shapes.canonical("roller") == "paint"
    assert shapes.make("layer", size=3).size == 3  # the decorator returned the function
    assert shapes.names() == ["layer", "paint"] and list(shapes) == ["paint", "layer"]
    assert [name for name, _ in shapes.items()] == ["paint", "layer"]
    assert "brush" in shapes and "paint" in shapes
    assert "pencil" not in shapes and ["paint"] not in shapes and None not in shapes


def test_a_name_or_alias_is_registered_once(shapes):
    for name, aliases in (("paint", ()), ("spray", ("brush",)), ("spray", ("can", "can"))):
        with pytest.raises(InputError, match="registered twice"):
            shapes.register(name, _paint, aliases=aliases)
    assert "spray" not in shapes and "can" not in shapes


def test_unknown_name_lists_the_choices_the_aliases_and_the_closest_name(shapes):
    with pytest.raises(InputError) as err:
        shapes.get("brushh")
    assert str(err.value) == ("unknown shape 'brushh' (did you mean 'brush'?); choose one of "
                              "['layer', 'paint'] (or aliases ['brush', 'roller']), or pass a "
                              "callable")
    for odd, hint in ((None, ""), (3, ""), (["paint"], " (did you mean 'paint'?)")):
        with pytest.raises(InputError) as err:
            shapes.make(odd)
        assert str(err.value).startswith(f"unknown shape {odd!r}{hint}; choose one of")


def test_bad_options_name_the_factory_and_the_valid_options(shapes):
    with pytest.raises(InputError) as err:
        shapes.make("brush", colour="blue")
    assert str(err.value) == ("bad arguments for shape paint: unknown option(s) ['colour'] "
                              "(did you mean 'color'?); valid options are ['color', 'width']")
    # the name is positional-only: a "name" option is an option like any other
    with pytest.raises(InputError, match=r"unknown option\(s\) \['name'\]"):
        shapes.make("paint", name="x")
    with pytest.raises(InputError, match="bad arguments for shape layer: .*size"):
        shapes.make("layer")  # a missing argument: the TypeError, as an InputError
    assert shapes.make("roller", width=3) == ("red", 3)


def test_a_typeerror_from_a_factory_taking_any_option_becomes_an_input_error():
    registry: Registry = Registry("thing")
    registry.register("strict", lambda **kwargs: dict(**kwargs, size=1))
    assert registry.make("strict", colour=2) == {"colour": 2, "size": 1}
    with pytest.raises(InputError, match="bad arguments for thing strict: .*size"):
        registry.make("strict", size=2)


def test_build_reads_specs_and_keeps_them_on_modules(shapes):
    spec = {"name": "layer", "size": 4}
    module = shapes.build(spec)
    assert isinstance(module, _Layer) and module.size == 4
    assert module.otmap_spec == spec and module.otmap_spec is not spec
    spec["size"] = 5  # the copy kept for checkpoints does not follow later edits
    assert module.otmap_spec == {"name": "layer", "size": 4}
    assert shapes.build({"name": "brush", "width": 2}) == ("red", 2)  # not a module: as is
    with pytest.raises(InputError, match="unknown shape None"):
        shapes.build({"size": 4})
    with pytest.raises(InputError, match=r"a shape spec is a mapping \{'name': \.\.\., "):
        shapes.build("layer")


# ------------------------------------------------------- every builder, names and aliases kept

COST_NAMES = {
    "StrongQuadratic": StrongQuadratic, "quadratic": StrongQuadratic,
    "strong_quadratic": StrongQuadratic, "InnerProduct": InnerProduct,
    "inner_product": InnerProduct, "WeakQuadratic": WeakQuadratic,
    "weak_quadratic": WeakQuadratic, "WeakKernel": WeakKernel, "weak_kernel": WeakKernel,
    "kernel": WeakKernel,
}
DEGRADATION_SPECS = {
    "GaussianNoise": (GaussianNoise, {"sigma": 0.3}),
    "gaussian_noise": (GaussianNoise, {"sigma": 0.3}),
    "noise": (GaussianNoise, {"sigma": 0.3}), "Grayscale": (Grayscale, {}),
    "grayscale": (Grayscale, {}), "Mask": (Mask, {}), "mask": (Mask, {}),
    "Downsample": (Downsample, {}), "downsample": (Downsample, {}), "Blur": (Blur, {}),
    "blur": (Blur, {}), "Compose": (Compose, {"steps": ["blur"]}),
    "compose": (Compose, {"steps": ["blur"]}),
}


@pytest.mark.parametrize("name, cls", COST_NAMES.items())
def test_every_cost_name_and_alias_builds_its_class(name, cls):
    assert type(build_cost(name, (2,))) is cls
    assert type(build_cost({"name": name, "scale": 2.0}, (2,))) is cls
    assert name in COSTS


def test_cost_names_are_the_class_names():
    assert COSTS.names() == ["InnerProduct", "StrongQuadratic", "WeakKernel", "WeakQuadratic"]
    assert build_cost(None, (1, 4, 4)).reduction == "mean"  # the default reduction still applies
    assert build_cost({"name": "quadratic", "reduction": "sum"}, (1, 4, 4)).reduction == "sum"


@pytest.mark.parametrize("name, expected", DEGRADATION_SPECS.items())
def test_every_degradation_name_and_alias_builds_its_class(name, expected):
    cls, kwargs = expected
    built = build_degradation({"name": name, **kwargs})
    assert name in DEGRADATIONS
    assert type(built) is cls and built.config()["name"] == cls.__name__
    assert type(build_degradation(built.config())) is cls  # the config round-trips


def test_schedule_embedding_network_benchmark_extractor_and_dataset_names():
    assert build_schedule({"name": "constant", "value": 2.0}) == Constant(2.0)
    assert build_schedule({"name": "linear_ramp", "start": 0, "end": 1, "steps": 4}) == \
        LinearRamp(0, 1, 4)
    assert build_schedule({"name": "cosine", "total": 10}) == Cosine(10)
    assert build_schedule({"name": "multistep", "milestones": [2, 4]}) == MultiStep((2, 4))
    assert SCHEDULES.names() == ["constant", "cosine", "linear_ramp", "multistep"]
    embeddings = {"Reshape": (Reshape, {"shape": [2, 2]}), "Upsample": (Upsample, {"size": 8}),
                  "LinearProjection": (LinearProjection, {"in_features": 2, "out_features": 3}),
                  "GrayToRGB": (GrayToRGB, {})}
    for name, (cls, kwargs) in embeddings.items():
        spec = {"name": name, **kwargs}
        built = build_embedding(spec)
        assert type(built) is cls and built.otmap_spec == spec
    assert EMBEDDINGS.names() == sorted(embeddings)
    nets = {"MapMLP": (MapMLP, {"in_features": 2, "out_features": 2, "hidden": [4]}),
            "PotentialMLP": (PotentialMLP, {"in_features": 2, "hidden": [4]}),
            "ResNetPotential": (ResNetPotential, {"in_channels": 1, "channels": [4]}),
            "UpsampleGenerator": (UpsampleGenerator, {"nz": 8, "size": 8, "channels": [4, 4]}),
            "UNet": (UNet, {"in_channels": 1, "out_channels": 1, "channels": [4, 4],
                            "norm": "none"}),
            "CondUNet": (CondUNet, {"in_channels": 1, "out_channels": 1, "channels": [4, 4],
                                    "noise_dim": 2}),
            "GradientICNNMap": (GradientICNNMap, {"in_features": 2, "hidden": [4]})}
    for name, (cls, kwargs) in nets.items():
        spec = {"name": name, **kwargs}
        built = build_net(spec)
        assert type(built) is cls and built.otmap_spec == spec
    assert NETS.names() == sorted(nets)
    assert type(benchmark_pair("gaussian", 2)) is GaussianPair
    assert type(benchmark_pair("brenier", 2, seed=1)) is BrenierPair
    assert PAIRS.get("w2b") is W2BenchmarkPair and PAIRS.names() == ["brenier", "gaussian", "w2b"]
    assert EXTRACTORS.get("digits") == DigitsFeatures.load_or_train
    assert EXTRACTORS.get("inception") is InceptionFeatures
    assert DATASETS.get("digits") is load_digits and DATASETS.get("mnist") is load_mnist
    assert DATASETS.get("cifar10") is load_cifar10
    assert DATASETS.names() == ["cifar10", "digits", "fashion_mnist", "folder", "mnist",
                               "mnist5k"]
    assert list(TOY_DATASETS) == [
        "gaussian", "gaussian_mixture", "3blobs", "8blobs", "grid", "moons", "swiss_roll",
        "s_curve", "circles", "uniform_square", "noisy_circle", "unit_circle", "letters",
        "mixture_1d"]


@pytest.mark.parametrize("build, fragment", [
    (lambda: build_cost("quadratik", (2,)), "unknown cost 'quadratik' (did you mean 'quadr"),
    (lambda: build_degradation("blurr"), "unknown degradation 'blurr' (did you mean 'blur'?)"),
    (lambda: build_schedule({"name": "cosin"}), "unknown schedule 'cosin' (did you mean 'cos"),
    (lambda: build_embedding({"name": "Reshap"}), "unknown embedding 'Reshap' (did you mean"),
    (lambda: build_net({"name": "MapMlp"}), "unknown network 'MapMlp' (did you mean 'MapMLP'?)"),
    (lambda: toy("moonz"), "unknown toy dataset 'moonz' (did you mean 'moons'?)"),
    (lambda: benchmark_pair("gausian", 2), "unknown benchmark 'gausian' (did you mean"),
    (lambda: build_extractor("incepton"), "unknown feature extractor 'incepton' (did you mean"),
    (lambda: load_dataset("digit"), "unknown dataset 'digit' (did you mean 'digits'?)"),
])
def test_every_builder_names_the_closest_choice(build, fragment):
    with pytest.raises(InputError) as err:
        build()
    assert fragment in str(err.value) and "choose one of" in str(err.value)


@pytest.mark.parametrize("build, fragment", [
    (lambda: build_cost({"name": "kernel", "sigmaa": 1}, (2,)), "cost WeakKernel"),
    (lambda: build_degradation({"name": "noise", "sigma": 1, "seed": 0}),
     "degradation GaussianNoise"),
    (lambda: build_schedule({"name": "cosine", "totl": 10}), "schedule cosine"),
    (lambda: build_embedding({"name": "Upsample", "sise": 8}), "embedding Upsample"),
    (lambda: build_net({"name": "MapMLP", "in_features": 2}), "network MapMLP"),
    (lambda: toy("moons", sigma=0.1), "toy dataset moons"),
    (lambda: benchmark_pair("gaussian", 2, root="x"), "benchmark gaussian"),
    (lambda: build_extractor("inception", path="x"), "feature extractor inception"),
    (lambda: load_dataset("digits", sise=8), "dataset digits"),
])
def test_every_builder_turns_bad_options_into_input_errors(build, fragment):
    with pytest.raises(InputError, match=f"bad arguments for {fragment}: "):
        build()


def _mappings(node: object) -> Iterator[dict]:
    """Every mapping in a parsed recipe, nested ones included."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _mappings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _mappings(value)


def test_every_name_the_recipes_store_still_builds():
    recipes = sorted((Path(otmap.__file__).parent / "recipes").glob("*.yaml"))
    assert len(recipes) > 20
    checked = set()
    for path in recipes:
        for spec in _mappings(yaml.safe_load(path.read_text())):
            if "cost" in spec:
                build_cost(spec["cost"], (2,))
            if "degrade" in spec:
                build_degradation(spec["degrade"])
            for key, registry in (("map", NETS), ("potential", NETS), ("embedding", EMBEDDINGS)):
                if isinstance(spec.get(key), dict) and "name" in spec[key]:
                    assert spec[key]["name"] in registry, path
                    checked.add(key)
            if "lr_schedule" in spec:
                build_schedule(spec["lr_schedule"], total_steps=10)
            if "toy" in spec:
                options = {k: v for k, v in spec.items() if k not in ("toy", "project", "degrade")}
                toy(spec["toy"], **options).sample(2, generator=torch.Generator().manual_seed(0))
            if "dataset" in spec:
                assert spec["dataset"] in DATASETS, path
            checked.update(spec.keys() & {"cost", "degrade", "lr_schedule", "toy", "dataset"})
    assert checked == {"cost", "degrade", "map", "lr_schedule", "toy", "dataset"}
