"""The numerical guards of kernel formulas, as JAX functions: the one implementation.

Where this sits: the records of `safe_sqrt` and `safe_div` (`prims/table.py`) print as calls to
these (`rt.safe_sqrt(...)`), so closed forms in generated modules and the runtime's own rules
(quadrature, Mehler series, Monte Carlo) guard the same way. On their valid domain they are sqrt
and division; on the boundary (zero variances, correlation ±1, rounding to -1e-17) they stay
finite, with finite gradients: the inner `where` keeps the untaken branch finite, so its gradient
is not NaN either.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["safe_div", "safe_sqrt"]


def safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) with finite value and gradient at x <= 0 (zero or -1e-17 variances)."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1)), 0)


def safe_div(x: jax.Array, y: jax.Array) -> jax.Array:
    """x / y, and 0 where y == 0 (a zero variance: the quantity it scales is 0 too)."""
    nz = y != 0
    return jnp.where(nz, x / jnp.where(nz, y, 1), 0)
