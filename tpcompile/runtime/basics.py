"""What every numerical rule of the runtime shares: the (value, error) result, dtypes, chunking,
the Gauss-Legendre and Gauss-Hermite nodes (computed once per degree, in float64), and
`Integrand`, the hashable wrapper that lets `jax.jit` cache a rule on the integrand's code.

Where this sits: below `quadrature.py`, `mehler.py` and `montecarlo.py`; no sympy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.polynomial.hermite_e import hermegauss

ArrayLike = jax.typing.ArrayLike

_CHUNK_ELEMENTS = 1 << 22  # elements per scan step of a node chunk (x8 bytes in float64)

# Contractions must not run in TF32 on GPUs (JAX's default float32 matmul precision there).
HIGHEST = lax.Precision.HIGHEST


class Integrand:
    """A generated integrand (a function of G values), equal to any other with the same code.

    The numerical rules are jitted with the integrand as a static argument, so XLA compiles once
    per distinct key. Function objects compare by identity: every `Compiled` (one `exec` of its
    module) would compile its rules afresh. Generated integrands are pure expressions of their
    arguments over the same globals (jax, jnp, rt), so the bytecode, the constants (by repr, which
    tells -0.0 from 0.0 and 1 from 1.0), the global and attribute names and the arity determine
    the function. The function's name, its line numbers and its arguments' names do not matter
    (the bytecode reads arguments by position): `tanh(u1)*sigmoid(u0)` over one input's
    variables and `tanh(w1)*sigmoid(w0)` over the other's compile once."""

    __slots__ = ("fn", "key")

    def __init__(self, fn: Callable[..., Any]) -> None:
        code = fn.__code__
        self.fn = fn
        self.key = (code.co_code, repr(code.co_consts), code.co_names, code.co_argcount)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Integrand) and self.key == other.key

    def __repr__(self) -> str:
        return f"Integrand({self.fn.__name__})"


def integrand(fn: Callable[..., Any]) -> Integrand:
    """Decorator of generated integrands (see `Integrand`)."""
    return Integrand(fn)


def record(trace: dict[int, Any], names: dict[str, Any]) -> None:
    """Store the quantities among a generated function's locals (`n<node>`) in trace[node]."""
    for name, value in names.items():
        if name[:1] == "n" and name[1:].isdigit():
            trace[int(name[1:])] = value


class Estimate(NamedTuple):
    """A numerical expectation and its error: an estimated bound, or a standard error (MC)."""

    value: jax.Array
    error: jax.Array


def float_dtype(*xs: ArrayLike) -> np.dtype:
    """The promotion of the (co)variance arguments; the weak 1.0 turns ints into floats."""
    return jnp.result_type(*xs, 1.0)


def is_traced(*xs: object) -> bool:
    """True under jit/vmap/grad: adaptive choices (sizes from data) are then impossible."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def chunk_size(batch: int, limit: int = 4096) -> int:
    """Nodes per scan step so that batch x chunk stays below `_CHUNK_ELEMENTS`."""
    return int(max(8, min(limit, _CHUNK_ELEMENTS // max(batch, 1))))


def check_degree(n: object) -> int:
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"degree must be a positive int, got {n!r}")
    return int(n)


@functools.cache
def legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(check_degree(n))


@functools.cache
def hermite_rule(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes and weights normalised to sum 1: E[h(z)] ~ Σ w_i h(z_i).

    numpy's rule is accurate to ~1e-15 up to degree 150 but fails (NaN) near 400; above 150 the
    Golub-Welsch eigenvalue method takes over (weights accurate to ~1e-16 absolute, which is all
    a quadrature sum needs). Nodes whose weight underflows are dropped, since 0 * f(z_i) is NaN
    where f overflows (exp of a large argument)."""
    n = check_degree(degree)
    if n <= 150:
        z, w = hermegauss(n)
    else:  # Jacobi matrix of the probabilists' Hermite recurrence: off-diagonal sqrt(k)
        z, vec = np.linalg.eigh(
            np.diag(np.sqrt(np.arange(1.0, n)), 1) + np.diag(np.sqrt(np.arange(1.0, n)), -1)
        )
        w = vec[0] ** 2
    w = w / w.sum()
    keep = w > np.finfo(np.float32).tiny
    return z[keep], w[keep]
