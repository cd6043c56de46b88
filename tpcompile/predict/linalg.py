"""The train-train kernel's factorizations, and functions of it, for `tpcompile.predict`.

neural-tangents' conventions (`neural_tangents/_src/predict.py`):

* `diag_reg` adds `diag_reg · trace(K)/n · I` to K, or `diag_reg · I` with
  `diag_reg_absolute_scale=True`;
* finite times use the eigendecomposition K = V diag(λ) Vᵀ, with negative eigenvalues clipped at
  0; t = ∞ (`t=None`) uses a Cholesky factorization;
* gradient flow on the loss ½·mean((f − y)²) over the m = y_train.size entries of y is
  df/dt = −Θ (f − y) / m, so a mode of eigenvalue λ decays as exp(−λ t / m).

Unlike neural-tangents, which returns NaN, a matrix that is not a kernel raises
`PredictInputError`: one that is far from symmetric, one with an eigenvalue below
−`PSD_RTOL`·max|λ| (smaller negative eigenvalues are rounding, and are clipped), one whose
Cholesky factorization fails (t = ∞). Modes of eigenvalue 0 — where neural-tangents divides 0 by
0 — contribute 0, as its clipped negative modes do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from tpcompile.predict.arrays import PredictInputError

#: A symmetric matrix whose most negative eigenvalue is below −PSD_RTOL · max|λ| is not a kernel
#: (or is too noisy an estimate of one to train on); above it, negative eigenvalues are rounding.
PSD_RTOL = 1e-3
#: Largest |K − Kᵀ| accepted, relative to max|K|. Kernels are symmetrised, (K + Kᵀ)/2, first.
SYMMETRY_RTOL = 1e-3

_HINT = (
    "a train-train kernel is a symmetric positive semi-definite (N, N) matrix, "
    "kernel_fn(x_train, None); add diag_reg (e.g. 1e-6) for a nearly singular one"
)


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def regularize(k: jax.Array, diag_reg: float, absolute: bool) -> jax.Array:
    """K + diag_reg · trace(K)/n · I, or K + diag_reg · I when `absolute`."""
    if diag_reg == 0:
        return k
    n = k.shape[0]
    scale = diag_reg if absolute else diag_reg * jnp.trace(k) / n
    return k + scale * jnp.eye(n, dtype=k.dtype)


def symmetric(k: jax.Array, what: str) -> jax.Array:
    """(K + Kᵀ)/2, after checking that K is symmetric up to SYMMETRY_RTOL."""
    if _concrete(k):
        asymmetry = float(jnp.max(jnp.abs(k - k.T)))
        if asymmetry > SYMMETRY_RTOL * float(jnp.max(jnp.abs(k))):
            raise PredictInputError(
                f"{what} is not symmetric (max |K - K^T| = {asymmetry:.3g})", hint=_HINT
            )
    return (k + k.T) / 2


@dataclass(frozen=True)
class Eigen:
    """K = vectors · diag(values) · vectorsᵀ, values ascending."""

    values: jax.Array
    vectors: jax.Array


def eigen(k: jax.Array, what: str) -> Eigen:
    """The eigendecomposition of a (regularized) train-train kernel, checked to be PSD."""
    values, vectors = jnp.linalg.eigh(symmetric(k, what))
    if _concrete(values):
        lowest = float(values[0])
        largest = float(jnp.max(jnp.abs(values)))
        if lowest < -PSD_RTOL * largest:
            raise PredictInputError(
                f"{what} is not positive semi-definite: its lowest eigenvalue is {lowest:.3g} "
                f"(largest |eigenvalue| {largest:.3g})",
                hint=_HINT,
            )
    return Eigen(values, vectors)


class Cholesky:
    """A Cholesky factorization of a (regularized) train-train kernel, and solves with it."""

    def __init__(self, k: jax.Array, what: str) -> None:
        self.n = k.shape[0]
        self.factor = jsl.cho_factor(symmetric(k, what), lower=False)
        if _concrete(self.factor[0]) and not bool(jnp.all(jnp.isfinite(self.factor[0]))):
            raise PredictInputError(
                f"{what} is not positive definite: its Cholesky factorization (used for "
                "t=None, infinite time) failed",
                hint="add diag_reg (e.g. 1e-6, relative to the mean diagonal) to make it "
                "positive definite, or give a finite t; " + _HINT.split("; ")[0],
            )

    def solve(self, b: jax.Array) -> jax.Array:
        """K⁻¹ b for b of shape (n,) or (n, ...)."""
        return jsl.cho_solve(self.factor, b)


# ---- functions of the eigenvalues at times t: arrays of shape (T, n) ----------------------------


def _rate(values: jax.Array, t: jax.Array, m: int) -> jax.Array:
    """λ⁺ t / m, with λ⁺ = max(λ, 0), and 0 for λ⁺ = 0 (also at t = ∞)."""
    positive = jnp.maximum(values, 0)[None, :]
    return jnp.where(positive > 0, positive * t[:, None] / m, 0)


def learned(values: jax.Array, t: jax.Array, m: int) -> jax.Array:
    """1 − exp(−λ⁺ t / m): the part of a mode learned by time t."""
    return -jnp.expm1(-_rate(values, t, m))


def learned_over(values: jax.Array, t: jax.Array, m: int) -> jax.Array:
    """(1 − exp(−λ t / m)) / λ for λ > 0, else 0: the (t-dependent) inverse of K."""
    positive = values[None, :] > 0
    return jnp.where(positive, learned(values, t, m) / jnp.where(positive, values, 1), 0)


def remaining(values: jax.Array, t: jax.Array, m: int) -> jax.Array:
    """exp(−λ⁺ t / m): the part of a mode not yet learned by time t."""
    return jnp.exp(-_rate(values, t, m))
