"""Joint Gaussian laws and groups of integrands: what the multi-variable rules share.

Where this sits in the pipeline: below `montecarlo.py` (Monte Carlo) and `tensor.py` (tensor
Gauss-Hermite), which the generated kernel module calls for expectations of functions of several
G values. A law is the joint covariance (an array, or a `Law`: distinct entries and their places)
and mean of d Gaussians; a group is the tuple of (f, g) members integrated against it, f of the
first `split` variables and g of the rest (g None for a mean E[f]).

How a group is evaluated, and why so. The rules are not one compiled function per group: XLA
compiles for ~0.5 s per group plus ~50 ms per function in it, and a gated recurrent program has
hundreds of groups (GRU T = 4: 114 Monte Carlo and 38 tensor compilations, 104 of its 112 s). The
work is split into pieces whose compilations every group reuses:
- `law_root`: the symmetric root of the covariance, on the host (NumPy; under a trace, in JAX);
- `points`: the points mean + root z of one step of nodes or draws (compiled per d and shape),
  read from all the standard points, put on the device once (`padded_steps`);
- `function_values`: each distinct function once per step, compiled once per function and shape
  (`basics.Integrand`s with the same code share it, across groups and programs);
- the rules' per-member updates (a product and a reduction, compiled once per shape).
Steps have power-of-two sizes from a budget per array (`step_size`), so few shapes occur.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tpcompile.runtime.basics import HIGHEST, float_dtype, is_traced
from tpcompile.runtime.guards import safe_sqrt

ArrayLike = jax.typing.ArrayLike
Fn = Callable[..., jax.Array]
# A member of a group: f of the first `split` variables times g of the others (g None: E[f]).
Member = tuple[Fn, Fn | None]
Pattern = tuple[tuple[int | float, ...], ...] | None


def psd_sqrt(cov: jax.Array) -> jax.Array:
    """Symmetric PSD root V sqrt(max(lam, 0)) V^T of covariances (..., d, d).

    eigh, not Cholesky: kernel covariances are routinely singular (identical or zero inputs) and
    slightly indefinite after rounding. The symmetric root is unique and continuous in cov, so
    sign and order choices of eigh cancel and shared nodes give estimates smooth across entries."""
    lam, vec = jnp.linalg.eigh(cov)
    return jnp.einsum("...ik,...k,...jk->...ij", vec, safe_sqrt(lam), vec, precision=HIGHEST)


def joint_covariance(cov_ll: jax.Array, cov_lr: jax.Array, cov_rr: jax.Array) -> jax.Array:
    """[[ll, lr], [lr^T, rr]] over the broadcast batch of the three blocks."""
    k, m = cov_ll.shape[-1], cov_rr.shape[-1]
    batch = jnp.broadcast_shapes(cov_ll.shape[:-2], cov_lr.shape[:-2], cov_rr.shape[:-2])
    ll = jnp.broadcast_to(cov_ll, batch + (k, k))
    lr = jnp.broadcast_to(cov_lr, batch + (k, m))
    rr = jnp.broadcast_to(cov_rr, batch + (m, m))
    return jnp.concatenate(
        [jnp.concatenate([ll, lr], -1), jnp.concatenate([jnp.swapaxes(lr, -1, -2), rr], -1)], -2
    )


class Law(NamedTuple):
    """A joint covariance as its distinct entries and their places: pattern[i][j] is an index
    into `entries` (an int) or a constant (a float). Generated modules pass this, not an
    assembled matrix: assembling d^2 arrays op by op costs more than the integral, and inside
    the compiled rule it is one fused kernel."""

    entries: tuple[ArrayLike, ...]
    pattern: tuple[tuple[int | float, ...], ...]


def check_law(
    cov: ArrayLike | Law, mean: ArrayLike | Sequence[float]
) -> tuple[tuple[jax.Array, ...], Pattern, jax.Array, tuple[int, ...]]:
    """(entries, pattern or None for a plain array, mean, batch shape), checked."""
    if isinstance(cov, Law):
        dtype = float_dtype(*cov.entries)
        entries = tuple(jnp.asarray(e, dtype) for e in cov.entries)
        pattern = tuple(tuple(row) for row in cov.pattern)
        d = len(pattern)
        if any(len(row) != d for row in pattern):
            raise ValueError(f"a Law's pattern must be square, got {pattern}")
        cov_batch = jnp.broadcast_shapes(*(e.shape for e in entries))
    else:
        dtype = float_dtype(cov)
        entries, pattern = (jnp.asarray(cov, dtype),), None
        d = square_dim(entries[0], "cov")
        cov_batch = entries[0].shape[:-2]
    mean = as_mean(mean, d, dtype, "mean")
    return entries, pattern, mean, jnp.broadcast_shapes(cov_batch, mean.shape[:-1])


def covariance(pattern: Pattern, entries: tuple[jax.Array, ...]) -> jax.Array:
    if pattern is None:
        return entries[0]
    batch = jnp.broadcast_shapes(*(e.shape for e in entries))
    dtype = entries[0].dtype
    arrays = [jnp.broadcast_to(e, batch) for e in entries]
    rows = [
        jnp.stack([arrays[p] if isinstance(p, int) else jnp.full(batch, p, dtype) for p in row], -1)
        for row in pattern
    ]
    return jnp.stack(rows, -2)


def as_mean(mean: ArrayLike | Sequence[float], dim: int, dtype: np.dtype, name: str) -> jax.Array:
    """A mean vector (..., dim) of `dtype`; `mean` is usually a tuple of Python floats."""
    arr = jnp.asarray(mean, dtype)
    if arr.ndim == 0 or arr.shape[-1] != dim:
        raise ValueError(f"{name} must have length {dim} (last axis), got shape {arr.shape}")
    return arr


def square_dim(cov: jax.Array, name: str) -> int:
    """k for a batch of covariances (..., k, k); otherwise a ValueError (a bug in the caller)."""
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must have shape (..., k, k), got {cov.shape}")
    return cov.shape[-1]


def joint_mean(
    mean_l: ArrayLike | Sequence[float], mean_r: ArrayLike | Sequence[float], k: int, m: int, dtype
) -> jax.Array:
    """The mean (..., k + m) of (a, b): the batch axes broadcast, never the variable axis (a
    length-1 mean_l broadcast against a length-3 mean_r once gave a mean of length 6)."""
    ml = as_mean(mean_l, k, dtype, "mean_l")
    mr = as_mean(mean_r, m, dtype, "mean_r")
    batch = jnp.broadcast_shapes(ml.shape[:-1], mr.shape[:-1])
    return jnp.concatenate(
        [jnp.broadcast_to(ml, batch + (k,)), jnp.broadcast_to(mr, batch + (m,))], axis=-1
    )


def pair_law(
    cov_ll: ArrayLike,
    cov_lr: ArrayLike,
    cov_rr: ArrayLike,
    mean_l: ArrayLike | Sequence[float],
    mean_r: ArrayLike | Sequence[float],
) -> tuple[jax.Array, jax.Array, int]:
    """The joint covariance and mean of (a, b) from the blocks, checked; and k = len(a)."""
    dtype = float_dtype(cov_ll, cov_lr, cov_rr)
    cov_ll, cov_lr, cov_rr = (jnp.asarray(x, dtype) for x in (cov_ll, cov_lr, cov_rr))
    k = square_dim(cov_ll, "cov_ll")
    m = square_dim(cov_rr, "cov_rr")
    if cov_lr.ndim < 2 or cov_lr.shape[-2:] != (k, m):
        raise ValueError(f"cov_lr must have shape (..., {k}, {m}), got {cov_lr.shape}")
    mean = joint_mean(mean_l, mean_r, k, m, dtype)
    return joint_covariance(cov_ll, cov_lr, cov_rr), mean, k


# ---- evaluating a group step by step ----------------------------------------------------------

# Elements of one array of points or values per step (512 kB in float64): the arrays of a step
# stay in cache; 16 times larger steps ran 3 times slower (memory bound), and smaller ones are
# dominated by the ~30 us of each dispatch.
_STEP_ELEMENTS = 1 << 16


def step_size(batch: tuple[int, ...], needed: int, cap: int | None = None) -> int:
    """Points per step: a power of two (steps of different groups share shapes, hence
    compilations), at most `_STEP_ELEMENTS` per array over the batch, no more than `needed`
    rounded up to a power of two, and at most `cap` (a user's memory bound) when given."""
    size = max(8, _STEP_ELEMENTS // max(math.prod(batch), 1))
    size = min(1 << (size.bit_length() - 1), 1 << max(needed - 1, 1).bit_length())
    return max(2, min(size, cap)) if cap else size


def _host_root(pattern: Pattern, entries: tuple[jax.Array, ...]) -> np.ndarray:
    """`psd_sqrt(covariance(pattern, entries))` in NumPy (float64): no compilation at all, where
    JAX compiles an eigh per dimension and shape. A covariance with a non-finite entry gets a NaN
    root (its quantities are then NaN, and the API names the first one)."""
    arrays = [np.asarray(e, np.float64) for e in entries]
    if pattern is None:
        cov = arrays[0]
    else:
        batch = np.broadcast_shapes(*(a.shape for a in arrays))
        arrays = [np.broadcast_to(a, batch) for a in arrays]
        cov = np.stack(
            [
                np.stack([arrays[p] if isinstance(p, int) else np.full(batch, p) for p in row], -1)
                for row in pattern
            ],
            -2,
        )
    finite = np.all(np.isfinite(cov), axis=(-2, -1))
    lam, vec = np.linalg.eigh(np.where(finite[..., None, None], cov, 0.0))
    root = (vec * np.sqrt(np.maximum(lam, 0.0))[..., None, :]) @ np.swapaxes(vec, -1, -2)
    return np.where(finite[..., None, None], root, np.nan)


def law_root(
    cov: ArrayLike | Law, mean: ArrayLike | Sequence[float]
) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
    """(root (..., d, d), mean (..., d), batch shape) of a law, checked."""
    entries, pattern, mean, batch = check_law(cov, mean)
    if is_traced(entries, mean):
        return psd_sqrt(covariance(pattern, entries)), mean, batch
    return jnp.asarray(_host_root(pattern, entries), mean.dtype), mean, batch


def padded_steps(z: np.ndarray, size: int, dtype: np.dtype) -> jax.Array:
    """The standard points z (P, d) zero-padded to whole steps of `size` rows, on the device
    once: each step then reads its rows there (`points`), with no host copy per step."""
    out = np.zeros((-(-len(z) // size) * size, *z.shape[1:]))
    out[: len(z)] = z
    return jnp.asarray(out, dtype)


@functools.partial(jax.jit, static_argnames=("size", "antithetic"))
def points(
    root: jax.Array,
    mean: jax.Array,
    z: jax.Array,
    start: ArrayLike,
    *,
    size: int,
    antithetic: bool = False,
) -> tuple[jax.Array, ...]:
    """The d coordinates of mean + root z for the standard points z[start : start + size] (of
    (P, d)), each flattened from (*batch, size) to one axis; with `antithetic`, of mean + root z
    and then mean - root z (each from (*batch, 2 size)). Flat: the integrands see one shape,
    batch × points, so a function is compiled once for the diagonal and the cross grid when
    their steps hold as many elements (`step_size`); the updates restore the batch axes."""
    z = lax.dynamic_slice_in_dim(z, start, size)
    d = z.shape[-1]
    batch = jnp.broadcast_shapes(root.shape[:-2], mean.shape[:-1])
    root = jnp.broadcast_to(root, batch + (d, d))
    shift = jnp.broadcast_to(mean, batch + (d,))[..., None]
    # (..., d, P): XLA's batched dot in this layout, sliced by rows, ran 3x faster than "i...p".
    x = jnp.einsum("...ij,pj->...ip", root, z.astype(root.dtype), precision=HIGHEST)
    both = jnp.concatenate([shift + x, shift - x], -1) if antithetic else shift + x
    return tuple(both[..., i, :].reshape(-1) for i in range(d))


@functools.lru_cache(maxsize=4096)
def _compiled(fn: Fn) -> Callable[..., jax.Array]:
    """fn compiled on its own, its result broadcast to its arguments' shape (a function that
    ignores a variable, or a constant, broadcasts here). Cached by the function: generated
    `Integrand`s compare by code, so equal integrands of any group or program share it."""

    @jax.jit
    def run(*cols: jax.Array) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(fn(*cols), cols[0].dtype), cols[0].shape)

    return run


def function_values(fns: Sequence[Fn], cols: Sequence[jax.Array]) -> list[jax.Array]:
    """Each function at the points whose coordinates are cols (its own variables only)."""
    return [_compiled(fn)(*cols) for fn in fns]


def distinct(
    members: Sequence[Member],
) -> tuple[tuple[Fn, ...], tuple[Fn, ...], list[tuple[int, int | None]]]:
    """The distinct left and right functions of a group, and each member as indices into them:
    each function is evaluated once, however many members it appears in."""
    lefts = tuple(dict.fromkeys(f for f, _ in members))
    rights = tuple(dict.fromkeys(g for _, g in members if g is not None))
    index = [(lefts.index(f), None if g is None else rights.index(g)) for f, g in members]
    return lefts, rights, index
