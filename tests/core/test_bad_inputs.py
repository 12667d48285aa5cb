"""Bad values for costs and schedules (otmap.core): each ends in an otmap error naming the fix
(issue 11)."""

from __future__ import annotations

import pytest

from otmap.core.costs import WeakKernel, WeakQuadratic, build_cost
from otmap.core.schedules import LinearRamp, build_schedule
from otmap.errors import InputError

# ----------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("spec", [{"name": "cosine", "total": "x"},
                                  {"name": "constant", "value": "x"},
                                  {"name": "multistep", "milestones": ["a"]}])
def test_schedules_with_non_numbers(spec):
    with pytest.raises(InputError, match="pass numbers for"):
        build_schedule(spec)


# ----------------------------------------------------------------------------- weak costs

@pytest.mark.parametrize("cost", [WeakQuadratic, WeakKernel])
@pytest.mark.parametrize("gamma", [-1, float("nan"), float("inf"), LinearRamp(0.0, -0.5, 10),
                                   {"name": "linear_ramp", "start": -1, "end": 0, "steps": 5},
                                   lambda step: -0.1])
def test_gamma_must_be_non_negative(cost, gamma):
    with pytest.raises(InputError) as err:
        cost(gamma=gamma)
    message = str(err.value)
    assert "gamma must be a finite number >= 0" in message
    assert "NOT and KNOT papers" in message and "results for gamma >= 0" in message


@pytest.mark.parametrize("gamma", [0, 0.66, LinearRamp(0.0, 0.66, 25000)])
def test_non_negative_gamma_is_accepted(gamma):
    assert WeakQuadratic(gamma=gamma).gamma >= 0 and WeakKernel(gamma=gamma).gamma >= 0


def test_negative_gamma_in_a_cost_spec():
    with pytest.raises(InputError, match="gamma must be a finite number >= 0"):
        build_cost({"name": "weak_quadratic", "gamma": -1}, (2,))


# --------------------------------------------------------- odd values the property tests found

def test_cost_name_that_is_not_a_string():
    with pytest.raises(InputError, match="unknown cost"):
        build_cost({"name": [1, 2]}, (2,))
