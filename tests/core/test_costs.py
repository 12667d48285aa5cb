"""Cost estimators, build_cost and the schedules, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from otmap.core.costs import (
    Cost,
    FromCallable,
    InnerProduct,
    StrongQuadratic,
    build_cost,
    default_reduction,
)
from otmap.core.schedules import (
    Constant,
    Cosine,
    LinearRamp,
    MultiStep,
    build_schedule,
    schedule_config,
)
from otmap.errors import InputError

# x: B = 2 inputs in R^2.  K = 1: one output each; K = 3: three outputs each.
X = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
YS1 = torch.tensor([[[2.0, 0.0]], [[3.0, -1.0]]])
YS3 = torch.tensor([
    [[2.0, 0.0], [1.0, 2.0], [0.0, 0.0]],
    [[3.0, -1.0], [0.0, 1.0], [1.0, -1.0]],
])

# By hand.  Row 0, x = (1, 2): y - x = (1, -2), (0, 0), (-1, -2) -> 1/2|.|^2 = 2.5, 0, 2.5
#                             <x, y> = 2, 5, 0
#           Row 1, x = (0, -1): y - x = (3, 0), (0, 2), (1, 0) -> 1/2|.|^2 = 4.5, 2, 0.5
#                             <x, y> = 1, -1, 1
QUAD_SUM = {1: [2.5, 4.5], 3: [5.0 / 3.0, 7.0 / 3.0]}
INNER_SUM = {1: [-2.0, -1.0], 3: [-7.0 / 3.0, -1.0 / 3.0]}
# Chebyshev distance max_i |y_i - x_i|: row 0: 2, 0, 2; row 1: 3, 2, 1
CHEB = {1: [2.0, 3.0], 3: [4.0 / 3.0, 2.0]}


def _ys(k: int) -> torch.Tensor:
    return YS1 if k == 1 else YS3


def _chebyshev(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y - x).abs().max(dim=1).values


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("reduction, divisor", [("sum", 1.0), ("mean", 2.0)])
def test_strong_quadratic_by_hand(k, reduction, divisor):
    cost = StrongQuadratic(reduction=reduction)
    expected = torch.tensor(QUAD_SUM[k]) / divisor
    torch.testing.assert_close(cost(X, _ys(k)), expected)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("reduction, divisor", [("sum", 1.0), ("mean", 2.0)])
def test_inner_product_by_hand(k, reduction, divisor):
    cost = InnerProduct(reduction=reduction)
    expected = torch.tensor(INNER_SUM[k]) / divisor
    torch.testing.assert_close(cost(X, _ys(k)), expected)


@pytest.mark.parametrize("k", [1, 3])
def test_from_callable_by_hand_and_pairs(k):
    seen = []

    def fn(x, y):
        seen.append((x.clone(), y.clone()))
        return _chebyshev(x, y)

    out = FromCallable(fn)(X, _ys(k))
    torch.testing.assert_close(out, torch.tensor(CHEB[k]))
    # fn sees B*K pairs: each x repeated K times next to its own outputs
    (xs, ys), = seen
    assert xs.shape == ys.shape == (2 * k, 2)
    torch.testing.assert_close(xs, X.repeat_interleave(k, dim=0))
    torch.testing.assert_close(ys, _ys(k).reshape(2 * k, 2))


@pytest.mark.parametrize("k", [1, 3])
def test_scale_multiplies_every_cost(k):
    ys = _ys(k)
    torch.testing.assert_close(StrongQuadratic(scale=2.0)(X, ys), 2.0 * torch.tensor(QUAD_SUM[k]))
    torch.testing.assert_close(
        InnerProduct(reduction="mean", scale=3.0)(X, ys), 1.5 * torch.tensor(INNER_SUM[k]))
    torch.testing.assert_close(FromCallable(_chebyshev, scale=0.5)(X, ys),
                               0.5 * torch.tensor(CHEB[k]))


def test_not_paper_scaling_two_c_over_d():
    # NOT's code: 2 C / D with C = 1/2 |x - y|^2 -> mean squared difference
    cost = StrongQuadratic(reduction="mean", scale=2)
    expected = ((YS3 - X[:, None]) ** 2).mean(-1).mean(-1)
    torch.testing.assert_close(cost(X, YS3), expected)


def test_mean_reduction_averages_over_all_image_coordinates():
    x = torch.arange(8.0).reshape(2, 1, 2, 2)
    ys = torch.zeros(2, 1, 1, 2, 2)
    # row 0: values 0..3 -> 1/2 (0+1+4+9) = 7 ; row 1: 4..7 -> 1/2 (16+25+36+49) = 63
    torch.testing.assert_close(StrongQuadratic("sum")(x, ys), torch.tensor([7.0, 63.0]))
    torch.testing.assert_close(StrongQuadratic("mean")(x, ys), torch.tensor([7.0, 63.0]) / 4)
    assert default_reduction((2,)) == "sum"
    assert default_reduction((3, 8, 8)) == "mean"


def test_quadratic_gradient_is_displacement_over_k():
    ys = YS3.clone().requires_grad_(True)
    StrongQuadratic()(X, ys).sum().backward()
    torch.testing.assert_close(ys.grad, (YS3 - X[:, None]) / 3)


@pytest.mark.parametrize("cost", [StrongQuadratic(), InnerProduct(), FromCallable(_chebyshev)])
@pytest.mark.parametrize("ys_shape", [(2, 2), (3, 1, 2), (2, 1, 3), (2, 1, 2, 1)])
def test_shape_errors(cost, ys_shape):
    with pytest.raises(InputError, match="embedding"):
        cost(X, torch.zeros(ys_shape))


def test_zero_samples_per_input_is_an_error():
    with pytest.raises(InputError, match="num_samples"):
        StrongQuadratic()(X, torch.zeros(2, 0, 2))


@pytest.mark.parametrize("bad_out", [lambda x, y: x.sum(1)[:1],
                                     lambda x, y: (x - y).abs(),
                                     lambda x, y: (x - y).abs().sum(1, keepdim=True)])
def test_from_callable_wrong_output_shape(bad_out):
    with pytest.raises(InputError, match="one value per pair"):
        FromCallable(bad_out)(X, YS3)


def test_bad_constructor_arguments():
    with pytest.raises(InputError, match="reduction"):
        StrongQuadratic(reduction="max")
    for scale in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="positive"):
            InnerProduct(scale=scale)
    with pytest.raises(InputError, match="callable"):
        FromCallable(3.0)


# ----------------------------------------------------------------------------- build_cost

@pytest.mark.parametrize("spec, cls", [
    ("StrongQuadratic", StrongQuadratic),
    ("quadratic", StrongQuadratic),
    ("strong_quadratic", StrongQuadratic),
    ("InnerProduct", InnerProduct),
    ("inner_product", InnerProduct),
    ({"name": "quadratic"}, StrongQuadratic),
    ({"name": "InnerProduct"}, InnerProduct),
    (None, StrongQuadratic),
])
def test_build_cost_by_name_alias_dict_none(spec, cls):
    cost = build_cost(spec, (2,))
    assert type(cost) is cls
    assert cost.reduction == "sum" and cost.scale == 1.0
    expected = QUAD_SUM[3] if cls is StrongQuadratic else INNER_SUM[3]
    torch.testing.assert_close(cost(X, YS3), torch.tensor(expected))


def test_build_cost_default_reduction_follows_sample_shape():
    assert build_cost(None, (3, 8, 8)).reduction == "mean"
    assert build_cost("inner_product", (1, 4, 4)).reduction == "mean"
    assert build_cost({"name": "quadratic", "reduction": "sum"}, (1, 4, 4)).reduction == "sum"


def test_build_cost_dict_arguments_and_round_trip():
    cost = build_cost({"name": "strong_quadratic", "reduction": "mean", "scale": 2.0}, (2,))
    torch.testing.assert_close(cost(X, YS1), torch.tensor(QUAD_SUM[1]))  # 2 * (sum / 2)
    again = build_cost(cost.config(), (2,))
    assert type(again) is StrongQuadratic and again.config() == cost.config()
    assert repr(again) == "StrongQuadratic(reduction='mean', scale=2.0)"


def test_build_cost_passes_cost_objects_and_wraps_callables():
    cost = InnerProduct(scale=3.0)
    assert build_cost(cost, (2,)) is cost
    wrapped = build_cost(_chebyshev, (2,))
    assert isinstance(wrapped, FromCallable) and wrapped.fn is _chebyshev
    torch.testing.assert_close(wrapped(X, YS3), torch.tensor(CHEB[3]))


@pytest.mark.parametrize("spec", ["wasserstein", {"name": "Quadratic"}, "inner-product"])
def test_build_cost_unknown_name_lists_choices(spec):
    with pytest.raises(InputError) as err:
        build_cost(spec, (2,))
    message = str(err.value)
    assert "unknown cost" in message
    assert "StrongQuadratic" in message and "inner_product" in message
    assert "callable" in message


def test_build_cost_bad_arguments_and_types():
    with pytest.raises(InputError, match="bad arguments for cost InnerProduct"):
        build_cost({"name": "InnerProduct", "temperature": 1.0}, (2,))
    with pytest.raises(InputError, match="name, dict, Cost or callable"):
        build_cost(42, (2,))


def test_build_cost_dict_without_name_defaults_to_quadratic():
    cost = build_cost({"reduction": "mean"}, (2,))
    assert type(cost) is StrongQuadratic and cost.reduction == "mean"


def test_cost_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Cost()(X, YS1)


# ----------------------------------------------------------------------------- schedules

def test_constant():
    assert Constant()(0) == 1.0 and Constant(0.25)(10_000) == 0.25


def test_linear_ramp_by_hand():
    ramp = LinearRamp(0.0, 0.66, 100)
    assert ramp(0) == 0.0
    assert ramp(50) == pytest.approx(0.33)
    assert ramp(25) == pytest.approx(0.165)
    assert ramp(100) == pytest.approx(0.66)
    assert ramp(10_000) == pytest.approx(0.66)
    assert ramp(-5) == 0.0
    assert LinearRamp(2.0, 1.0, 4)(1) == pytest.approx(1.75)


def test_cosine_by_hand():
    c = Cosine(100)
    assert c(0) == pytest.approx(1.0)
    assert c(50) == pytest.approx(0.5)
    assert c(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert c(100) == pytest.approx(0.0, abs=1e-12)
    assert c(150) == pytest.approx(0.0, abs=1e-12)
    floor = Cosine(100, final=0.1)
    assert floor(50) == pytest.approx(0.55)
    assert floor(100) == pytest.approx(0.1)


def test_cosine_warmup_by_hand():
    c = Cosine(110, final=0.0, warmup=10)
    assert c(0) == pytest.approx(0.1)
    assert c(4) == pytest.approx(0.5)
    assert c(9) == pytest.approx(1.0)
    assert c(10) == pytest.approx(1.0)
    assert c(60) == pytest.approx(0.5)  # halfway through the 100 decay steps
    assert c(110) == pytest.approx(0.0, abs=1e-12)


def test_multistep_by_hand():
    m = MultiStep((10, 20), factor=0.5)
    assert [m(s) for s in (0, 9, 10, 19, 20, 1000)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert MultiStep((3,), factor=0.1)(3) == pytest.approx(0.1)


def test_build_schedule_forms():
    assert build_schedule(None)(7) == 1.0
    assert build_schedule(None, default=0.3)(7) == 0.3
    assert build_schedule(0.5) == Constant(0.5)
    assert build_schedule(2)(3) == 2.0 and isinstance(build_schedule(2)(3), float)
    ms = build_schedule({"name": "multistep", "milestones": [5, 8], "factor": 0.1})
    assert ms == MultiStep((5, 8), 0.1)
    assert ms(6) == pytest.approx(0.1) and ms(8) == pytest.approx(0.01)
    assert build_schedule({"name": "cosine", "total": 20})(10) == pytest.approx(0.5)
    assert build_schedule({"name": "linear_ramp", "start": 1, "end": 3, "steps": 4})(2) == 2.0
    assert build_schedule({"name": "constant", "value": 0.7})(99) == 0.7

    def fn(step):
        return 1.0 / (1 + step)

    assert build_schedule(fn) is fn


def test_build_schedule_errors():
    with pytest.raises(InputError, match="unknown schedule 'exponential'.*cosine"):
        build_schedule({"name": "exponential"})
    with pytest.raises(InputError, match="bad arguments for schedule cosine"):
        build_schedule({"name": "cosine", "totl": 10})
    with pytest.raises(InputError, match="unknown schedule 'linear'.*multistep"):
        build_schedule("linear")
    with pytest.raises(InputError, match="number, a dict or a callable"):
        build_schedule([0.1, 0.2])


def test_build_schedule_bare_names():
    assert build_schedule("constant") == Constant(1.0)
    assert build_schedule("constant", default=0.5)(1000) == 0.5
    assert build_schedule("cosine", total_steps=40) == Cosine(40)
    assert build_schedule("cosine", total_steps=40)(20) == pytest.approx(0.5)


@pytest.mark.parametrize("schedule", [Constant(0.5), LinearRamp(0, 1, 10), Cosine(50, 0.1, 5),
                                      MultiStep((3, 6), 0.5)])
def test_schedule_config_round_trip(schedule):
    config = schedule_config(schedule)
    rebuilt = build_schedule(config)
    assert rebuilt == schedule
    assert [rebuilt(s) for s in range(0, 60, 3)] == [schedule(s) for s in range(0, 60, 3)]
