"""Registries of named objects (costs, networks, schedules, degradations, ...): names with
aliases, one error for unknown names (the choices and a did-you-mean hint) and for bad
options, and building from the plain ``{"name": ..., **kwargs}`` specs that recipes and
checkpoints store."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

from torch import nn

from otmap.errors import InputError
from otmap.utils.checks import NAME_CUTOFF, close_match, unknown_choice

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def _unknown_options(factory: Callable[..., Any], kwargs: dict) -> str | None:
    """Why ``kwargs`` do not fit ``factory``'s signature (options it does not take), or None
    when they do or when it takes ``**kwargs``."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    bad = [key for key in kwargs if key not in valid]
    if not bad:
        return None
    close = close_match(bad[0], valid, NAME_CUTOFF)
    hint = f" (did you mean {close!r}?)" if close else ""
    return f"unknown option(s) {bad}{hint}; valid options are {valid}"


class Registry(Generic[R]):
    """Factories of one kind (``what``, e.g. ``"cost"``, used in messages) by name, each
    returning an ``R``. ``otherwise`` ends the unknown-name error with what may be passed
    instead of a name (e.g. ``"pass a callable c(x, y) -> [N]"``).

    ``name in registry`` holds for names and aliases; iterating gives the names.
    """

    def __init__(self, what: str, otherwise: str = "") -> None:
        self.what = what
        self.otherwise = otherwise
        self._factories: dict[str, Callable[..., R]] = {}
        self._aliases: dict[str, str] = {}

    @overload
    def register(self, name: str, factory: None = None,
                 aliases: Iterable[str] = ()) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, factory: F, aliases: Iterable[str] = ()) -> F: ...

    def register(self, name: str, factory: F | None = None,
                 aliases: Iterable[str] = ()) -> F | Callable[[F], F]:
        """Register ``factory`` under ``name`` and ``aliases`` and return it; without
        ``factory``, a decorator that does so."""
        if factory is None:
            return lambda target: self.register(name, target, aliases)
        names = [name, *aliases]
        taken = [n for n in names if n in self]
        if taken or len(set(names)) < len(names):
            raise InputError(f"{self.what} name(s) {taken or names} registered twice")
        self._factories[name] = factory
        self._aliases.update(dict.fromkeys(names[1:], name))
        return factory

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._factories or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def names(self) -> list[str]:
        """The registered names (not the aliases), sorted."""
        return sorted(self._factories)

    def items(self) -> list[tuple[str, Callable[..., R]]]:
        """``(name, factory)`` pairs, in registration order."""
        return list(self._factories.items())

    def canonical(self, name: object) -> str:
        """The registered name that ``name`` (a name or an alias) stands for; an unknown
        name raises :class:`InputError` listing the choices, with the closest one."""
        if name not in self:
            raise unknown_choice(self.what, name, self.names(), list(self._aliases),
                                 self.otherwise)
        return self._aliases.get(name, name)

    def get(self, name: object) -> Callable[..., R]:
        """The factory registered as ``name`` (or one of its aliases)."""
        return self._factories[self.canonical(name)]

    def make(self, name: object, /, **kwargs: Any) -> R:
        """``get(name)(**kwargs)``; options the factory does not take, or a ``TypeError``
        from it, raise :class:`InputError` naming the factory."""
        key = self.canonical(name)
        factory = self._factories[key]
        problem = _unknown_options(factory, kwargs)
        if problem is None:
            try:
                return factory(**kwargs)
            except TypeError as err:
                problem = str(err)
        raise InputError(f"bad arguments for {self.what} {key}: {problem}") from None

    def build(self, spec: dict) -> R:
        """``make(spec["name"], **rest)``; an ``nn.Module`` keeps a copy of ``spec`` as
        ``module.otmap_spec``, from which a checkpoint rebuilds it."""
        if not isinstance(spec, dict):
            raise InputError(f"a {self.what} spec is a mapping {{'name': ..., **kwargs}}, "
                             f"got {spec!r}")
        kwargs = dict(spec)
        built = self.make(kwargs.pop("name", None), **kwargs)
        if isinstance(built, nn.Module):
            built.otmap_spec = dict(spec)
        return built
