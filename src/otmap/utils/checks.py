"""Argument checks shared by every layer: unknown keys with a did-you-mean hint, numbers
within a range. Each raises :class:`~otmap.errors.InputError` naming the option and the fix."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable
from typing import Any

from otmap.errors import InputError


def check_keys(data: dict, valid: list[str], where: str) -> None:
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(valid)}"
            raise InputError(f"{where}: unknown key {key!r}{hint}")


def check_number(name: str, value: Any, expected: str, valid: Callable[[float], bool]) -> float:
    """``train.<name>`` as a finite float for which ``valid`` holds (numeric strings such as
    YAML's ``1e-3`` are read as numbers), else :class:`InputError` saying it must be
    ``expected``."""
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or not math.isfinite(number) or not valid(number):
        raise InputError(f"train.{name} must be {expected}, got {value!r}")
    return number
