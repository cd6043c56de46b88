"""Arrays over member pairs: the state of one pass of the family evaluator, and the maps.

Where this sits: below `codegen/tensor.py` (the family path's evaluator), which runs a template
program's kernel graph pass by pass; this module holds what one pass reads and writes and how
a map over members (a shift, a border, a pooling window) acts on an array.

Shapes. A pair quantity of members (P, Q) is an array P × Q × batch, the batch being (N,) for
one batch with itself (the diagonal pass, and `paired=True`) and (N1, N2) for a grid. The batch
is the last axis, so a map over members moves whole rows of the batch (a shift is a copy of
contiguous memory, measured 4× faster than with the batch first) and elementwise formulas run
along it in vector lanes. A reference to a quantity at (a, a) or (b, b) (`L`, `R`) reads its
member diagonal (P × batch): the variance of member i is Cov(i, i), which is what an
elementwise formula at member pair (i, j) needs. Outside the evaluator every per-example array
has its batch first (`swap` turns one into the other).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy

from tpcompile.codegen.jaxprint import lambdify_jax
from tpcompile.kernels.graph import Ref

Shape = tuple[int, int]


class Formula:
    """An elementwise sympy formula over references, compiled once."""

    def __init__(self, expr: sympy.Expr) -> None:
        expr = sympy.sympify(expr)
        self.refs = sorted(expr.atoms(Ref), key=lambda r: (r.node, r.side))
        self.fn = lambdify_jax(expr, self.refs) if self.refs else None
        self.value = None if self.refs else float(expr)


class Pass:
    """One evaluation: the diagonal pass (reading its own member diagonals) or a cross pass
    (reading the diagonals L, R of its two batches)."""

    def __init__(self, x1: Any, x2: Any, grid: bool) -> None:
        self.x1, self.x2, self.grid = x1, x2, grid
        self.batch = (x1.shape[0], x2.shape[0]) if grid else (x1.shape[0],)
        self.dtype = x1.dtype
        self.values: dict[int, Any] = {}
        self.left: dict[int, Any] = {}  # member diagonals, P (L) or Q (R) × batch
        self.right: dict[int, Any] = {}

    def full(self, value: Any, shape: Shape) -> Any:
        return jnp.broadcast_to(jnp.asarray(value, self.dtype), (*shape, *self.batch))

    def read(self, ref: Ref) -> Any:
        if ref.side == "X":
            return self.values[ref.node]
        vec = (self.left if ref.side == "L" else self.right)[ref.node]
        if self.grid:
            return vec[:, None, :, None] if ref.side == "L" else vec[None, :, None, :]
        return vec[:, None] if ref.side == "L" else vec[None, :]

    def formula(self, f: Formula, shape: Shape) -> Any:
        if f.fn is None:
            return self.full(f.value, shape)
        return self.full(f.fn(*(self.read(r) for r in f.refs)), shape)


#: Rows with at most this many entries are applied as that many gathers; denser maps (a global
#: mean) as a matrix product.
_GATHERS = 4


def apply_map(matrix: np.ndarray, v: Any, axis: int, dtype: Any) -> Any:
    """matrix applied to the member axis `axis` (0 or 1) of v: gathers and a weighted sum
    where every row has few entries (a convolution's shift, its zero-padded border, a pooling
    window), which costs the size of v and not times the number of members."""
    width = int((matrix != 0).sum(axis=1).max(initial=0))
    if width > _GATHERS:
        m = jnp.asarray(matrix, dtype)
        return (
            jnp.einsum("ip,pq...->iq...", m, v)
            if axis == 0
            else jnp.einsum("pq...,jq->pj...", v, m)
        )
    out = None
    rows = np.arange(matrix.shape[0])
    order = np.argsort(matrix == 0, axis=1, kind="stable")[:, :width]  # nonzeros first
    for k in range(width):
        idx = order[:, k]
        weight = matrix[rows, idx]
        picked = jnp.take(v, jnp.asarray(idx), axis=axis)
        if not np.all(weight == 1.0):
            shape = (-1, 1) if axis == 0 else (1, -1)
            picked = picked * batched(weight.reshape(shape), v.ndim, dtype)
        out = picked if out is None else out + picked
    if out is None:  # no entries at all: zeros of the mapped shape
        shape = list(v.shape)
        shape[axis] = matrix.shape[0]
        return jnp.zeros(shape, dtype)
    return out


def batched(weights: np.ndarray, ndim: int, dtype: Any) -> Any:
    """Member weights (2-D) as a constant that broadcasts over the batch axes of an ndim array."""
    return jnp.asarray(weights.reshape(weights.shape + (1,) * (ndim - 2)), dtype)


def _single(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(index, weight) per row if every row has at most one entry (weight 0: none)."""
    if int((matrix != 0).sum(axis=1).max(initial=0)) > 1:
        return None
    idx = np.argmax(matrix != 0, axis=1)
    return idx, matrix[np.arange(matrix.shape[0]), idx]


def gathers_both(left: np.ndarray, right: np.ndarray, v: Any, dtype: Any) -> Any | None:
    """left @ v @ rightᵀ as ONE gather when both maps are shifts with borders (a convolution's
    tap on both sides of a pair quantity); None otherwise."""
    a, b = _single(left), _single(right)
    if a is None or b is None:
        return None
    out = v[jnp.asarray(a[0])[:, None], jnp.asarray(b[0])[None, :]]
    weight = np.outer(a[1], b[1])
    return out if np.all(weight == 1.0) else out * batched(weight, v.ndim, dtype)


def diagonal_of(value: Any, diagonal_only: bool) -> Any:
    """The member diagonal, members × batch."""
    return value[:, 0] if diagonal_only else jnp.moveaxis(jnp.diagonal(value, 0, 0, 1), -1, 0)


def swap(v: Any) -> Any:
    """Batch first <-> members first, for arrays (P × N) and Hermite expansions alike."""
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), v)


__all__ = [
    "Formula",
    "Pass",
    "Shape",
    "apply_map",
    "batched",
    "diagonal_of",
    "gathers_both",
    "swap",
]
