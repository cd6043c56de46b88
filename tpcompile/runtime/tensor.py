"""Tensor Gauss-Hermite for smooth functions of at most 4 Gaussians (THEORY.md §6.4).

Where this sits in the pipeline: the analysis (`kernels/plan.py`) picks this rule for an
expectation of smooth functions of several G values in at most 4 dimensions; the generated kernel
module calls `tensor_group` (through `tpcompile.runtime`) once per group of quantities over one
joint law (`laws.py`). degree^d nodes in the whitened coordinates (the symmetric root of the joint
covariance); the error is estimated against the rule of 3/4 the degree.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tpcompile.runtime.basics import Estimate, hermite_rule
from tpcompile.runtime.laws import (
    ArrayLike,
    Fn,
    Law,
    Member,
    distinct,
    function_values,
    law_root,
    padded_steps,
    pair_law,
    points,
    square_dim,
    step_size,
)


@functools.cache
def tensor_grid(degree: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """All degree^dim Gauss-Hermite nodes (P, dim) and product weights (P,)."""
    z, w = hermite_rule(degree)
    grids = np.meshgrid(*([z] * dim), indexing="ij")
    weights = np.meshgrid(*([w] * dim), indexing="ij")
    return (np.stack([g.ravel() for g in grids], -1), np.prod([g.ravel() for g in weights], 0))


@functools.lru_cache(maxsize=64)
def _device_grid(degree: int, dim: int, size: int, dtype: str) -> tuple[jax.Array, jax.Array]:
    """`tensor_grid` padded to whole steps of `size` nodes, on the device: the same for every
    group of one dimension and step size, so put there once, not once per group."""
    return tuple(padded_steps(a, size, np.dtype(dtype)) for a in tensor_grid(degree, dim))


@jax.jit
def _tensor_update(
    acc: jax.Array, w: jax.Array, start: ArrayLike, f: jax.Array, g: jax.Array | None
) -> jax.Array:
    """acc + the weighted sum of one member's values at one step of nodes (flat `points`),
    with the weights w[start : start + step] of all the (padded) nodes."""
    values = (f if g is None else f * g).reshape(*acc.shape, -1)
    step = lax.dynamic_slice_in_dim(w, start, values.shape[-1])
    return acc + jnp.sum(step * values, -1)


def _tensor_sums(
    members: Sequence[Member],
    split: int,
    root: jax.Array,
    mean: jax.Array,
    batch: tuple[int, ...],
    degree: int,
    size: int,
) -> list[jax.Array]:
    """Every member's degree^d-node rule, in steps of `size` nodes (the last one padded with
    nodes of weight 0 at z = 0: finite, and without effect)."""
    z, w = _device_grid(degree, mean.shape[-1], size, mean.dtype.name)
    nodes = degree ** mean.shape[-1]
    lefts, rights, index = distinct(members)
    sums = [jnp.zeros(batch, mean.dtype)] * len(index)
    for start in range(0, nodes, size):
        cols = points(root, mean, z, start, size=size)
        fs = function_values(lefts, cols[:split])
        gs = function_values(rights, cols[split:])
        sums = [
            _tensor_update(acc, w, start, fs[i], None if j is None else gs[j])
            for acc, (i, j) in zip(sums, index, strict=True)
        ]
    return sums


def tensor_group(
    members: Sequence[Member],
    cov: ArrayLike | Law,
    mean: ArrayLike | Sequence[float],
    *,
    split: int,
    degree: int = 16,
) -> tuple[Estimate, ...]:
    """E[f(a) g(b)] for each member (f, g) (g None: E[f(a)]), x = (a, b) ~ N(mean, cov) with a the
    first `split` of d <= 4 variables, f and g smooth: degree^d Gauss-Hermite nodes per entry,
    the error estimated against degree - degree/4. cov (..., d, d) or a `Law`, mean (..., d)."""
    root, mean, batch = law_root(cov, mean)
    degree = int(degree)
    low = degree - max(2, degree // 4)
    # One step size for both rules (the coarse rule's node count, rounded up to a power of two):
    # the functions are compiled for one shape, not two.
    size = step_size(batch, low ** mean.shape[-1])
    fine = _tensor_sums(members, int(split), root, mean, batch, degree, size)
    coarse = _tensor_sums(members, int(split), root, mean, batch, low, size)
    return tuple(Estimate(v, jnp.abs(v - c)) for v, c in zip(fine, coarse, strict=True))


def tensor_pair(
    f: Fn,
    g: Fn,
    cov_ll: ArrayLike,
    cov_lr: ArrayLike,
    cov_rr: ArrayLike,
    mean_l: ArrayLike | Sequence[float],
    mean_r: ArrayLike | Sequence[float],
    *,
    degree: int = 16,
) -> Estimate:
    """E[f(a) g(b)], (a, b) in R^k x R^m jointly normal, k + m <= 4, f and g smooth: degree^(k+m)
    Gauss-Hermite nodes per entry. Arguments as for `mc_pair`."""
    cov, mean, k = pair_law(cov_ll, cov_lr, cov_rr, mean_l, mean_r)
    return tensor_group(((f, g),), cov, mean, split=k, degree=degree)[0]


def tensor_mean(
    f: Fn, cov: ArrayLike, mean: ArrayLike | Sequence[float], *, degree: int = 16
) -> Estimate:
    """E[f(a)], a ~ N(mean, cov) in R^k, k <= 4, f smooth."""
    k = square_dim(jnp.asarray(cov), "cov")
    return tensor_group(((f, None),), cov, mean, split=k, degree=degree)[0]
