"""The shared argument checks: what they accept, return, refuse, and what the error says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from otmap.errors import InputError
from otmap.utils.checks import (
    check_choice,
    check_int,
    check_keys,
    check_number,
    check_positive,
    check_positive_int,
    check_real,
    close_match,
    unknown_choice,
)


def _message(check, *args, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        check(*args, **kwargs)
    return str(err.value)


def test_close_match_and_unknown_choice():
    assert close_match("stepz", ["steps", "seed"]) == "steps"
    assert close_match(None, ["steps"]) is None
    assert str(unknown_choice("mode", "bilinar", ("area", "bilinear", None))) == (
        "unknown mode 'bilinar' (did you mean 'bilinear'?); choose one of "
        "['area', 'bilinear', None]")
    assert str(unknown_choice("cost", "x", ["A"], aliases=["b_a", "a"], otherwise="pass f")) == (
        "unknown cost 'x'; choose one of ['A'] (or aliases ['a', 'b_a']), or pass f")


def test_check_choice():
    assert check_choice("split", "test", ("train", "test")) == "test"
    assert check_choice("upsample", None, ("nearest", None)) is None
    assert check_choice("size", np.int64(16), (8, 16)) == 16
    assert _message(check_choice, "split", "tset", ("train", "test")) == (
        "unknown split 'tset' (did you mean 'test'?); choose one of ['train', 'test']")
    assert "unknown channels True" in _message(check_choice, "channels", True, (1, 3))
    assert "unknown size 1.5" in _message(check_choice, "size", 1.5, (8, 16))


def test_check_int_and_check_positive_int():
    assert check_int("workers", 0) == 0 and type(check_int("n", np.int64(7))) is int
    assert check_positive_int("steps", 3) == 3
    assert _message(check_int, "factor", 1, 2, fix="pass e.g. 2 or 4") == (
        "factor must be an integer >= 2, got 1: pass e.g. 2 or 4")
    for bad in (0, -1, 2.0, True, "3", None):
        expected = f"n must be a positive integer, got {bad!r}"
        assert _message(check_positive_int, "n", bad) == expected
    assert _message(check_int, "seed", -1) == "seed must be an integer >= 0, got -1"


@pytest.mark.parametrize("bounds, good, bad, expected", [
    ({}, [-1e9, 0, 2.5], [math.inf, math.nan, "1", True, None], "a finite number"),
    ({"above": 0}, [1e-9, 3], [0, -1, math.inf], "a positive number"),
    ({"at_least": 0}, [0, 0.5], [-1e-9, math.inf], "a number >= 0"),
    ({"above": 1}, [1.5], [1], "a number > 1"),
    ({"at_most": 2}, [2, -5], [2.5], "a number <= 2"),
    ({"above": 0, "at_most": 1}, [1, 0.5], [0, 1.5], "in (0, 1]"),
    ({"at_least": 0, "below": 1}, [0, 0.5], [1, -0.5], "in [0, 1)"),
    ({"above": 0, "below": 2.5}, [1], [0, 2.5], "in (0, 2.5)"),
])
def test_check_real(bounds, good, bad, expected):
    for value in good:
        result = check_real("x", value, **bounds)
        assert type(result) is float and result == value
    for value in bad:
        assert _message(check_real, "x", value, **bounds) == f"x must be {expected}, got {value!r}"


def test_check_positive_and_fix():
    assert check_positive("sigma", np.float32(0.5)) == 0.5
    assert _message(check_positive, "std", 0.0, fix="pass e.g. 1.0") == (
        "std must be a positive number, got 0.0: pass e.g. 1.0")


def test_check_keys_and_check_number_are_unchanged():
    assert _message(check_keys, {"stepz": 1}, ["steps", "seed"], "train") == (
        "train: unknown key 'stepz'; did you mean 'steps'?")
    assert _message(check_keys, {"zzz": 1}, ["steps", "seed"], "train") == (
        "train: unknown key 'zzz'; valid keys: ['seed', 'steps']")
    assert check_number("lr", "1e-3", "positive", lambda v: v > 0) == 1e-3
    assert _message(check_number, "lr", True, "positive", lambda v: v > 0) == (
        "train.lr must be positive, got True")
