"""The runtime of generated kernel modules: the one import they need besides jax.

Where this sits in the pipeline: parse -> elaborate -> analyse -> emit -> **run**. A generated
module (`codegen/module.py`) computes closed forms inline and calls this module for everything else:
data inner products (`gram`, `gram_diag`), broadcasting (`full`, `matrix`) and the numerical
Gaussian expectations chosen by the analysis (`kernels/plan.py`, THEORY.md §6), implemented in

- `mehler`: Hermite coefficients per input (`hermite_expansion`) and the Mehler series per pair
  (`mehler_pair`) for one-variable functions with a smooth side;
- `quadrature`: the 1-D panel rule (`quad_mean`), the split 2-D rule for kinked functions
  (`split_pair`), and plain 2-D Gauss-Hermite (`hermite_pair`, a reference);
- `tensor`, `montecarlo`: functions of several Gaussians - tensor Gauss-Hermite for smooth ones
  in at most 4 dimensions (`tensor_group`, `tensor_pair`, `tensor_mean`), else Monte Carlo with
  common random numbers and antithetic pairs (`mc_group`, `mc_pair`, `mc_mean`); generated
  modules call the group rules, one call for all the quantities over one joint law (`Law`), with
  their integrands wrapped by `integrand` so that compilations are shared.

Each numerical function returns (value, error) - an estimated error bound, or a standard error for
Monte Carlo - and the generated code passes it through `track`, which keeps the error when the
caller asked for errors (`Compiled.kernel_fn(..., return_errors=True)`) and returns the value.
All functions are traceable, vectorised over batch entries, follow the (co)variance dtype, and give
finite values for zero variances and correlations of exactly +-1.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tpcompile.runtime.angles import atan2
from tpcompile.runtime.basics import Estimate, Integrand, integrand, record
from tpcompile.runtime.guards import safe_div, safe_sqrt
from tpcompile.runtime.laws import Law
from tpcompile.runtime.mehler import (
    HermiteExpansion,
    MehlerEstimate,
    hermite_expansion,
    mehler_pair,
)
from tpcompile.runtime.montecarlo import mc_group, mc_mean, mc_pair
from tpcompile.runtime.quadrature import (
    gauss_mean,
    gauss_pair,
    hermite_pair,
    quad_mean,
    split_pair,
)
from tpcompile.runtime.tensor import tensor_group, tensor_mean, tensor_pair

__all__ = [
    "Estimate",
    "HermiteExpansion",
    "Integrand",
    "Law",
    "MehlerEstimate",
    "atan2",
    "columns",
    "full",
    "gauss_mean",
    "gauss_pair",
    "gram",
    "gram_diag",
    "hermite_expansion",
    "hermite_pair",
    "integrand",
    "matrix",
    "per_example",
    "per_input",
    "mc_group",
    "mc_mean",
    "mc_pair",
    "mehler_pair",
    "mirrored",
    "quad_mean",
    "record",
    "rows",
    "safe_div",
    "safe_sqrt",
    "split_pair",
    "tensor_group",
    "tensor_mean",
    "tensor_pair",
    "track",
]

ArrayLike = jax.typing.ArrayLike


def track(
    errors: MutableMapping[int, list[Any]] | None, node: int, result: Sequence[Any]
) -> jax.Array:
    """The value of a numerical (value, error, ...) result; with an `errors` mapping, the whole
    result is also appended to errors[node] (a quantity is evaluated once per context: the
    diagonal of each batch and the cross grid)."""
    if errors is not None:
        errors.setdefault(node, []).append(result)
    return result[0]


# ---- data and array plumbing used by generated kernel modules ----------------------------------


def _fixed_order_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Σ_k a[..., k] b[..., k] summed in one fixed pairwise order, whatever the batch shape.

    BLAS matmuls and reductions pick their summation order by array shape, so the same pair of
    vectors can round differently in the N1×N2 grid and in the per-example diagonal. Kernel
    formulas are ill-conditioned at correlation 1 (arccos), where that 1e-16 difference becomes
    1e-8; with every inner product summed the same way, identical inputs give bitwise identical
    variances and covariances, and an exactly zero angle.
    """
    prod = a * b
    d = prod.shape[-1]
    size = 1 << max(d - 1, 0).bit_length()
    prod = jnp.pad(prod, [(0, 0)] * (prod.ndim - 1) + [(0, size - d)])
    while prod.shape[-1] > 1:
        half = prod.shape[-1] // 2
        prod = prod[..., :half] + prod[..., half:]
    return prod[..., 0]


@functools.partial(jax.jit, static_argnames=("paired",))
def gram(
    x1: jax.Array, x2: jax.Array, p: ArrayLike, q: ArrayLike, paired: bool = False
) -> jax.Array:
    """<x1[a, p], x2[b, q]> / d for all pairs (a, b): shape (N1, N2). x has shape (N, P, d).
    `paired`: for the pairs (x1[a], x2[a]) only, shape (N,) (`cross` on a list of pairs).
    Compiled once per shape: the positions are traced, so a program reading many position
    pairs calls one compiled function (eager, `lax.map` would trace and compile per call)."""
    if paired:
        return _paired_gram(x1, x2, p, q)
    right = x2[:, q, :]
    rows = lax.map(lambda row: _fixed_order_dot(row[None, :], right), x1[:, p, :], batch_size=64)
    return rows / x1.shape[-1]


def gram_diag(x: jax.Array, p: int, q: int) -> jax.Array:
    """<x[a, p], x[a, q]> / d for every example a: shape (N,)."""
    return _paired_gram(x, x, p, q)


def _paired_gram(x1: jax.Array, x2: jax.Array, p: ArrayLike, q: ArrayLike) -> jax.Array:
    return _fixed_order_dot(x1[:, p, :], x2[:, q, :]) / x1.shape[-1]


def columns(diagonal: Mapping[Any, Any], paired: bool = False) -> dict[int, Any]:
    """The per-example quantities of batch 1 as columns (N1, 1) of the kernel grid, each
    reshaped once for every line of `cross` that reads it (Hermite expansions included);
    `paired` (a list of pairs, one per example of each batch): as they are."""
    return _lifted(diagonal, None if paired else 1)


def rows(diagonal: Mapping[Any, Any], paired: bool = False) -> dict[int, Any]:
    """The per-example quantities of batch 2 as rows (1, N2) of the kernel grid."""
    return _lifted(diagonal, None if paired else 0)


def _lifted(diagonal: Mapping[Any, Any], axis: int | None) -> dict[int, Any]:
    if axis is None:
        return per_example(diagonal, lambda a: a)
    return per_example(diagonal, lambda a: lax.expand_dims(a, (axis,)))


def per_example(diagonal: Mapping[Any, Any], fn: Any) -> dict[int, Any]:
    """The quantities (integer keys) of a `diagonal` result with `fn` applied to each per-example
    array (every leaf of a Hermite expansion); constants (0-d) are left as they are."""
    quantities = {k: v for k, v in diagonal.items() if isinstance(k, int)}
    return jax.tree_util.tree_map(lambda a: a if jnp.ndim(a) == 0 else fn(a), quantities)


def full(x1: jax.Array, x2: jax.Array, value: ArrayLike, paired: bool = False) -> jax.Array:
    """`value` broadcast to the (N1, N2) kernel grid in the inputs' dtype (constants included);
    `paired`: to the list of pairs (N,)."""
    shape = x1.shape[:1] if paired else (x1.shape[0], x2.shape[0])
    return jnp.broadcast_to(jnp.asarray(value, dtype=x1.dtype), shape)


def per_input(x: jax.Array, value: ArrayLike) -> jax.Array:
    """`value` broadcast to one entry per example of the batch x, in x's dtype."""
    return jnp.broadcast_to(jnp.asarray(value, dtype=x.dtype), x.shape[:1])


def matrix(rows: Sequence[Sequence[ArrayLike]]) -> jax.Array:
    """Stack a small matrix of broadcastable arrays into shape (..., k, m)."""
    entries = jnp.broadcast_arrays(*(jnp.asarray(e) for row in rows for e in row))
    k, m = len(rows), len(rows[0])
    return jnp.stack(entries, axis=-1).reshape(*entries[0].shape, k, m)


def mirrored(
    result: Sequence[Any], own: Sequence[Any] | None, upper: Any, lower: Any, n: int
) -> tuple[Any, ...]:
    """A numerical result over the pairs above the diagonal as an n×n grid (value, error, ...):
    mirrored below, the diagonal from the per-example pass's result `own` (0 without one)."""

    def grid(values: Any, diagonal: Any) -> np.ndarray:
        out = np.zeros((n, n))
        out[upper, lower] = out[lower, upper] = np.broadcast_to(np.asarray(values), len(upper))
        if diagonal is not None:
            diagonal = np.asarray(diagonal)
            out[np.arange(n), np.arange(n)] = diagonal[:n] if diagonal.ndim else diagonal
        return out

    head = [grid(result[i], None if own is None else own[i]) for i in range(2)]
    return (*head, *result[2:])
