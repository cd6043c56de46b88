"""The record of one nonlinearity, and the registry every stage reads.

Where this sits: `prims/table.py` registers one `Prim` per nonlinearity (importing the package
`tpcompile.prims` loads it). The front end reads the
language's builtins from it (names, numeric arguments, how to build the sympy expression, "did
you mean" hints), the numerical planner its kinks, smoothness and NumPy reference, the JAX printer
its printing template, the IR printer its spelling, the docs its row. Nothing else lists
nonlinearities: adding one is one `Prim` (plus its closed forms, if it has any).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sympy

__all__ = [
    "Prim",
    "by_function",
    "language_builtins",
    "lookup",
    "records",
    "register",
    "temporarily",
]


def _no_check(*numbers: sympy.Expr) -> str | None:
    return None


@dataclass(frozen=True)
class Prim:
    """One nonlinearity.

    name: its name in programs (`relu`) and in printed IR; internal records (language=False) are
        functions that only derivatives and closed forms produce (`gelu_prime`, `safe_sqrt`).
    doc: one line for the builtins table of docs/language.md.
    function: the sympy function class this record describes as an atom (None for a builtin
        defined as a combination of other atoms, like abs = 2*relu(e) - e).
    build: `build(x, *numbers)` is the sympy expression of the builtin applied to x (default:
        `function` itself); numbers are the compile-time arguments named in `numbers`, validated
        first by `check`.
    jax: the JAX text of `function` applied to printed arguments `{0}`, `{1}`, ... (each
        parenthesised unless atomic, so templates never worry about precedence); None: sympy's
        own printing.
    numpy: a float64 NumPy version of `function` (to locate kinks of composed arguments).
    kinks: argument values where `function` is not smooth; () for an analytic function; None
        when it is irregular in ways a quadrature rule cannot split at (numerics then sample).
    vector: usable on vectors (False: scalars only, e.g. sqrt in normalisation).
    examples: valid numeric-argument tuples, for the docs and for tests iterating the table.
    """

    name: str
    doc: str
    function: type | None = None
    build: Callable[..., sympy.Expr] = None  # type: ignore[assignment]  # set in __post_init__
    numbers: tuple[str, ...] = ()
    jax: str | None = None
    numpy: Callable[..., Any] | None = None
    kinks: tuple[float, ...] | None = ()
    vector: bool = True
    language: bool = True
    check: Callable[..., str | None] = _no_check
    examples: tuple[tuple[float, ...], ...] = ((),)

    def __post_init__(self) -> None:
        if self.build is None:
            if self.function is None:
                raise ValueError(f"record {self.name!r} needs a function or a build")
            object.__setattr__(self, "build", self.function)

    @property
    def smooth(self) -> bool:
        """Analytic everywhere (no kinks, not irregular)."""
        return self.kinks == ()


_REGISTRY: dict[str, Prim] = {}


def register(prim: Prim) -> Prim:
    """Add a record (names are unique)."""
    if prim.name in _REGISTRY:
        raise ValueError(f"a nonlinearity named {prim.name!r} is already registered")
    _REGISTRY[prim.name] = prim
    _by_function.cache_clear()
    return prim


@contextlib.contextmanager
def temporarily(prim: Prim) -> Iterator[Prim]:
    """Register `prim` for the duration of a `with` block (tests of the registry's reach)."""
    register(prim)
    try:
        yield prim
    finally:
        del _REGISTRY[prim.name]
        _by_function.cache_clear()


def records() -> tuple[Prim, ...]:
    """Every record, in registration order (the docs' order)."""
    return tuple(_REGISTRY.values())


def lookup(name: str) -> Prim | None:
    return _REGISTRY.get(name)


class _Builtins(Mapping[str, Prim]):
    """The language's builtins by name: a live view, so a registered record is a builtin at once."""

    def __getitem__(self, name: str) -> Prim:
        prim = lookup(name)
        if prim is None or not prim.language:
            raise KeyError(name)
        return prim

    def __iter__(self) -> Iterator[str]:
        return (p.name for p in records() if p.language)

    def __len__(self) -> int:
        return sum(1 for _ in self)


language_builtins: Mapping[str, Prim] = _Builtins()


def by_function(cls: type) -> Prim | None:
    """The record describing sympy function class `cls` as an atom, if any."""
    return _by_function().get(cls)


@functools.cache
def _by_function() -> dict[type, Prim]:
    return {p.function: p for p in _REGISTRY.values() if p.function is not None}
