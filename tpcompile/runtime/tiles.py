"""Evaluation in blocks: memory bounded by the block, not by N1 × N2 (DESIGN §7).

Where this sits: below the family evaluator (`codegen/tensor.py`), whose quantities are arrays of
N1 × N2 × P × Q numbers. A block function is compiled once for one block shape and run on every
block; the last block is padded by repeating its last row, so every call has that shape (one XLA
compilation, and every example computed in the same lanes whatever N is). Pytrees in and out:
every leaf's axis 0 is the batch axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

#: Numbers per quantity in one block: 2^17 float64 numbers are 1 MiB, so the tens of quantities
#: a block holds at once stay in cache and their buffers are reused from block to block. Measured
#: on conv1d (benchmarks/families.py): 2^20 took 0.148 s warm (16 fresh pages of memory zeroed
#: per block quantity), 2^18 0.071 s, 2^17 0.052 s, 2^15 0.056 s (more calls per pair).
BLOCK_NUMBERS = 1 << 17


def block_rows(numbers_per_row: int, multiple: int = 8, cap: int | None = None) -> int:
    """Rows per block so that one quantity holds about BLOCK_NUMBERS numbers (a multiple of
    `multiple`, at least `multiple`, at most `cap`)."""
    rows = max(multiple, BLOCK_NUMBERS // max(numbers_per_row, 1) // multiple * multiple)
    return rows if cap is None else max(multiple, min(rows, cap // multiple * multiple))


def _pad(tree: Any, start: int, size: int, n: int) -> Any:
    """Rows start .. start + size of every leaf, the rows past n repeating row n - 1."""

    def cut(a: Any) -> Any:
        block = a[start : min(start + size, n)]
        short = size - block.shape[0]
        if short:
            block = jnp.concatenate([block, jnp.repeat(block[-1:], short, axis=0)])
        return block

    return jax.tree_util.tree_map(cut, tree)


def _join(parts: list[Any], n: int, axis: int = 0) -> Any:
    def cat(*leaves: Any) -> Any:
        out = jnp.concatenate(leaves, axis=axis) if len(leaves) > 1 else leaves[0]
        return jax.lax.slice_in_dim(out, 0, n, axis=axis)

    return jax.tree_util.tree_map(cat, *parts)


def by_rows(fn: Callable[[Any], Any], tree: Any, rows: int) -> Any:
    """fn over blocks of `rows` rows of every leaf of `tree`, outputs joined on axis 0."""
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    parts = [fn(_pad(tree, start, rows, n)) for start in range(0, n, rows)]
    return _join(parts, n)


def by_tiles(fn: Callable[[Any, Any], Any], left: Any, right: Any, rows: int, cols: int) -> Any:
    """fn(left block, right block) -> leaves of shape (rows, cols), over the tiles of the
    N1 × N2 grid, joined into N1 × N2 outputs."""
    n1 = jax.tree_util.tree_leaves(left)[0].shape[0]
    n2 = jax.tree_util.tree_leaves(right)[0].shape[0]
    lines = []
    for i in range(0, n1, rows):
        a = _pad(left, i, rows, n1)
        tiles = [fn(a, _pad(right, j, cols, n2)) for j in range(0, n2, cols)]
        lines.append(_join(tiles, n2, axis=1))
    return _join(lines, n1)


__all__ = ["BLOCK_NUMBERS", "block_rows", "by_rows", "by_tiles"]
