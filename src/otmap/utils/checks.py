"""Argument checks shared by every layer: unknown keys and names with a did-you-mean hint,
one of a few choices, integers and finite numbers within bounds. Each raises
:class:`~otmap.errors.InputError` naming the option and, where one is given, the fix."""

from __future__ import annotations

import difflib
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from otmap.errors import InputError

#: how close a misspelt name must be to a valid one to be suggested: lower than for keys
#: (difflib's 0.6), since the hint comes with the full list of choices instead of replacing it
NAME_CUTOFF = 0.5

_COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def close_match(word: object, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to ``str(word)`` (difflib ratio >= ``cutoff``), or None."""
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=cutoff)
    return close[0] if close else None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _with_fix(message: str, fix: str) -> str:
    return f"{message}: {fix}" if fix else message


def check_keys(data: dict, valid: list[str], where: str) -> None:
    for key in data:
        if key not in valid:
            close = close_match(key, valid)
            hint = f"; did you mean {close!r}?" if close else f"; valid keys: {sorted(valid)}"
            raise InputError(f"{where}: unknown key {key!r}{hint}")


def check_number(name: str, value: Any, expected: str, valid: Callable[[float], bool]) -> float:
    """``train.<name>`` as a finite float for which ``valid`` holds (numeric strings such as
    YAML's ``1e-3`` are read as numbers), else :class:`InputError` saying it must be
    ``expected``."""
    number = None
    if _is_number(value):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or not math.isfinite(number) or not valid(number):
        raise InputError(f"train.{name} must be {expected}, got {value!r}")
    return number


def unknown_choice(what: str, value: object, choices: Sequence[Any],
                   aliases: Sequence[str] = (), otherwise: str = "") -> InputError:
    """The error for a ``value`` that is none of ``choices`` (nor their ``aliases``): it lists
    them, suggests the closest name and ends with ``otherwise``, the alternative to a name
    (e.g. ``"pass a callable c(x, y) -> [N]"``)."""
    names = [c for c in choices if isinstance(c, str)]
    close = close_match(value, [*names, *aliases], NAME_CUTOFF)
    message = f"unknown {what} {value!r}"
    if close:
        message += f" (did you mean {close!r}?)"
    message += f"; choose one of {list(choices)}"
    if aliases:
        message += f" (or aliases {sorted(aliases)})"
    if otherwise:
        message += f", or {otherwise}"
    return InputError(message)


def check_choice(what: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices`` (``True`` is not ``1`` here), else
    :func:`unknown_choice`'s error."""
    if not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
        raise unknown_choice(what, value, choices)
    return value


def check_int(what: str, value: Any, minimum: int = 0, fix: str = "") -> int:
    """``value`` as an int ``>= minimum`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise InputError(_with_fix(f"{what} must be {expected}, got {value!r}", fix))
    return int(value)


def check_positive_int(what: str, value: Any, fix: str = "") -> int:
    """``value`` as an int ``>= 1``."""
    return check_int(what, value, 1, fix)


def check_bool(what: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise InputError(f"{what} must be true or false, got {value!r}")
    return value


def check_real(what: str, value: Any, *, above: float | None = None,
               at_least: float | None = None, below: float | None = None,
               at_most: float | None = None, fix: str = "") -> float:
    """``value`` as a finite float within the given bounds (at most one lower bound, ``above``
    or ``at_least``, and one upper bound, ``below`` or ``at_most``); bools and strings are
    refused."""
    bounds = [(sign, bound) for sign, bound in
              ((">", above), (">=", at_least), ("<", below), ("<=", at_most)) if bound is not None]
    number = float(value) if _is_number(value) else math.nan
    if math.isfinite(number) and all(_COMPARISONS[sign](number, b) for sign, b in bounds):
        return number
    if len(bounds) == 2:
        (low_sign, low), (high_sign, high) = bounds
        expected = (f"in {'(' if low_sign == '>' else '['}{low:g}, "
                    f"{high:g}{')' if high_sign == '<' else ']'}")
    elif bounds == [(">", 0)]:
        expected = "a positive number"
    elif bounds:
        expected = f"a number {bounds[0][0]} {bounds[0][1]:g}"
    else:
        expected = "a finite number"
    raise InputError(_with_fix(f"{what} must be {expected}, got {value!r}", fix))


def check_positive(what: str, value: Any, fix: str = "") -> float:
    """``value`` as a finite float ``> 0``."""
    return check_real(what, value, above=0, fix=fix)
