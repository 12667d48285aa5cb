"""Schedule arguments are checked when a schedule is built: each bad one raises InputError
naming the argument and the fix, never a raw TypeError now or mid-training."""

from __future__ import annotations

import pytest

from otmap.core.schedules import Cosine, LinearRamp, MultiStep, build_schedule
from otmap.errors import InputError


@pytest.mark.parametrize("milestones", [5, "15000", [5, "a"], [1.5], [True], [-1], {"a": 1}])
def test_multistep_milestones_must_be_a_list_of_steps(milestones):
    with pytest.raises(InputError, match=r"milestones must be a list of steps such as "
                                         r"\[15000, 30000\], got"):
        build_schedule({"name": "multistep", "milestones": milestones})
    with pytest.raises(InputError, match="milestones must be a list of steps"):
        MultiStep(milestones)


def test_multistep_takes_a_list_or_a_tuple():
    assert MultiStep([5, 8], 0.1) == MultiStep((5, 8), 0.1)
    assert MultiStep([5, 8]).milestones == (5, 8)
    assert build_schedule({"name": "multistep", "milestones": []})(100) == 1.0


@pytest.mark.parametrize(("spec", "match"), [
    ({"name": "cosine", "total": 0}, "total must be a positive integer, got 0"),
    ({"name": "cosine", "total": 10.5}, "total must be a positive integer, got 10.5"),
    ({"name": "cosine", "total": 10, "warmup": -1}, "warmup must be an integer >= 0"),
    ({"name": "cosine", "total": 10, "warmup": 20}, "warmup=20 is longer than total=10"),
    ({"name": "cosine", "total": 10, "final": None}, "final must be a number, got None"),
    ({"name": "linear_ramp", "start": 0, "end": 1, "steps": 0},
     "steps must be a positive integer, got 0"),
    ({"name": "linear_ramp", "start": 0, "end": "1", "steps": 5}, "end must be a number"),
    ({"name": "linear_ramp", "start": True, "end": 1, "steps": 5}, "start must be a number"),
    ({"name": "multistep", "milestones": [5], "factor": "half"}, "factor must be a number"),
    ({"name": "constant", "value": [1.0]}, "value must be a number"),
])
def test_schedule_arguments_are_checked(spec, match):
    with pytest.raises(InputError, match=match) as err:
        build_schedule(spec)
    assert f"schedule {spec['name']}:" in str(err.value)
    assert "pass " in str(err.value)  # the fix


def test_direct_construction_is_checked_too():
    with pytest.raises(InputError, match="schedule cosine: total"):
        Cosine(-3)
    with pytest.raises(InputError, match="schedule linear_ramp: steps"):
        LinearRamp(0, 1, 2.5)


def test_a_bool_is_not_a_schedule():
    with pytest.raises(InputError, match="a schedule is a number, a dict or a callable"):
        build_schedule(True)
