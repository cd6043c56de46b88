"""What every numerical rule of the runtime shares: the (value, error) result, dtypes, chunking,
and the Gauss-Legendre and Gauss-Hermite nodes (computed once per degree, in float64).

Where this sits: below `quadrature.py`, `mehler.py` and `montecarlo.py`; no sympy.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.polynomial.hermite_e import hermegauss

ArrayLike = jax.typing.ArrayLike

_CHUNK_ELEMENTS = 1 << 22  # elements per scan step of a node chunk (x8 bytes in float64)

# Contractions must not run in TF32 on GPUs (JAX's default float32 matmul precision there).
HIGHEST = lax.Precision.HIGHEST


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
