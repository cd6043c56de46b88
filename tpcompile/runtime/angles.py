"""atan2 without libm: the angle of the arc-cosine closed forms, vectorised (DESIGN §7).

Where this sits: the printer (`codegen/jaxprint.py`) prints sympy's `atan2` as `rt.atan2`, so
every closed form with an angle (relu, step, abs, erf, ...) in generated modules and in the
family evaluator calls this. XLA:CPU lowers `atan2` to a scalar libm call (measured 5.5 ms for
10^6 float64 entries here, against 1.3 ms for this: a few dozen vector multiply-adds).

Method: with t = min(|x|, |y|) / max(|x|, |y|) in [0, 1], atan(t) is reduced to |u| <= tan(π/8)
(u = (t - 1)/(t + 1) above tan(π/8), plus π/4), where the Taylor series atan(u) = u Σ_k
(-1)^k u^(2k) / (2k + 1) is summed while its terms matter. The series alternates, so the error
relative to u is below the first term left out, and atan(u) ≥ u/1.06: for float64 to k = 18
(tan(π/8)^38 / 39 < 7.2e-17, below half an ulp), for float32 to k = 8 (tan(π/8)^18 / 19 <
7e-9). Then the quadrants, then the sign of y: atan2(±0, +0) = ±0 and atan2(±0, -0) = ±π, as
in JAX and C. Small angles keep their relative accuracy (no cancellation near θ = 0).
tests/test_angles.py checks it against NumPy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["atan2"]

_TAN_PI_8 = math.sqrt(2.0) - 1.0
#: Taylor terms by float width in bytes (see the module docstring).
_TERMS = {8: 19, 4: 9, 2: 5}


def atan2(y: jax.Array, x: jax.Array) -> jax.Array:
    """The angle of (x, y) in [-π, π], elementwise, with broadcasting."""
    y, x = jnp.asarray(y), jnp.asarray(x)
    dtype = jnp.result_type(y, x, float)
    y, x = y.astype(dtype), x.astype(dtype)
    ax, ay = jnp.abs(x), jnp.abs(y)
    hi, lo = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
    t = lo / jnp.where(hi > 0, hi, 1)
    big = t > _TAN_PI_8
    u = jnp.where(big, (t - 1) / (t + 1), t)
    z = u * u
    terms = _TERMS.get(jnp.dtype(dtype).itemsize, 19)
    series = jnp.full_like(z, (-1.0) ** (terms - 1) / (2 * terms - 1))
    for k in reversed(range(terms - 1)):
        series = series * z + (-1.0) ** k / (2 * k + 1)
    angle = u * series
    angle = jnp.where(big, math.pi / 4 + angle, angle)
    angle = jnp.where(ay > ax, math.pi / 2 - angle, angle)
    angle = jnp.where(jnp.signbit(x), math.pi - angle, angle)
    return jnp.where(jnp.signbit(y), -angle, angle)
