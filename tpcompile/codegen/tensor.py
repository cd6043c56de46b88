"""Evaluating a template program's kernel graph as tensors over member pairs (DESIGN §6).

Where this sits: the back end of the family path, beside `codegen/module.py` (the scalar path's
emitter). The analysis of a template program (`kernels/families.py`) gives a graph whose
quantities are arrays over pairs of members; this module turns it into two JAX functions with
the generated module's interface, `diagonal(x)` and `cross(x1, x2, L, R, ...)`, each traced once
into one compiled function. What it costs follows the number of families, not of positions.

Shapes. A pair quantity of members (P, Q) is an array batch × P × Q, the batch being (N,) for
one batch with itself (the diagonal pass, and `paired=True`) and (N1, N2) for a grid. A
reference to a quantity at (a, a) or (b, b) (`L`, `R`) reads its member diagonal: the variance
of member i is Cov(i, i), which is what an elementwise formula at member pair (i, j) needs. The
diagonal pass returns those diagonals (batch × P) for the cross pass to read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy

from tpcompile import ir
from tpcompile.codegen.jaxprint import lambdify_jax
from tpcompile.codegen.module import closure
from tpcompile.ir.families import roll
from tpcompile.ir.template import Unrollable, template
from tpcompile.kernels.families import analyse_template
from tpcompile.kernels.graph import (
    ClosedForm,
    FamilyGram,
    KernelGraph,
    Mapped,
    Node,
    Ref,
    Total,
    refs,
)
from tpcompile.kernels.param import NTK, Parameterization
from tpcompile.kernels.plan import NumericOptions
from tpcompile.resources import KernelSize
from tpcompile.runtime import per_example, tiles

Shape = tuple[int, int]
#: Examples per block of the diagonal pass, at most (a multiple of 8: whole vector lanes).
DIAGONAL_BLOCK = 64


class _Formula:
    """An elementwise sympy formula over references, compiled once."""

    def __init__(self, expr: sympy.Expr) -> None:
        expr = sympy.sympify(expr)
        self.refs = sorted(expr.atoms(Ref), key=lambda r: (r.node, r.side))
        self.fn = lambdify_jax(expr, self.refs) if self.refs else None
        self.value = None if self.refs else float(expr)


class _Pass:
    """One evaluation: the diagonal pass (reading its own member diagonals) or a cross pass
    (reading the diagonals L, R of its two batches)."""

    def __init__(self, x1: Any, x2: Any, grid: bool) -> None:
        self.x1, self.x2, self.grid = x1, x2, grid
        self.batch = (x1.shape[0], x2.shape[0]) if grid else (x1.shape[0],)
        self.dtype = x1.dtype
        self.values: dict[int, Any] = {}
        self.left: dict[int, Any] = {}  # member diagonals, batch-1 × P (L) or Q (R)
        self.right: dict[int, Any] = {}

    def full(self, value: Any, shape: Shape) -> Any:
        return jnp.broadcast_to(jnp.asarray(value, self.dtype), (*self.batch, *shape))

    def read(self, ref: Ref) -> Any:
        if ref.side == "X":
            return self.values[ref.node]
        vec = (self.left if ref.side == "L" else self.right)[ref.node]
        if self.grid:
            return vec[:, None, :, None] if ref.side == "L" else vec[None, :, None, :]
        return vec[:, :, None] if ref.side == "L" else vec[:, None, :]

    def formula(self, f: _Formula, shape: Shape) -> Any:
        if f.fn is None:
            return self.full(f.value, shape)
        return self.full(f.fn(*(self.read(r) for r in f.refs)), shape)


#: Rows with at most this many entries are applied as that many gathers; denser maps (a global
#: mean) as a matrix product.
_GATHERS = 4


def _apply(matrix: np.ndarray, v: Any, axis: int, dtype: Any) -> Any:
    """matrix applied to the member axis `axis` (-2 or -1) of v: gathers and a weighted sum
    where every row has few entries (a convolution's shift, its zero-padded border, a pooling
    window), which costs the size of v and not times the number of members."""
    width = int((matrix != 0).sum(axis=1).max(initial=0))
    if width > _GATHERS:
        m = jnp.asarray(matrix, dtype)
        return (
            jnp.einsum("ip,...pq->...iq", m, v)
            if axis == -2
            else jnp.einsum("...pq,jq->...pj", v, m)
        )
    out = None
    rows = np.arange(matrix.shape[0])
    order = np.argsort(matrix == 0, axis=1, kind="stable")[:, :width]  # nonzeros first
    for k in range(width):
        idx = order[:, k]
        weight = matrix[rows, idx]
        picked = jnp.take(v, jnp.asarray(idx), axis=axis)
        if not np.all(weight == 1.0):
            shape = (-1, 1) if axis == -2 else (1, -1)
            picked = picked * jnp.asarray(weight, dtype).reshape(shape)
        out = picked if out is None else out + picked
    if out is None:  # no entries at all: zeros of the mapped shape
        shape = list(v.shape)
        shape[axis] = matrix.shape[0]
        return jnp.zeros(shape, dtype)
    return out


def _single(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(index, weight) per row if every row has at most one entry (weight 0: none)."""
    if int((matrix != 0).sum(axis=1).max(initial=0)) > 1:
        return None
    idx = np.argmax(matrix != 0, axis=1)
    return idx, matrix[np.arange(matrix.shape[0]), idx]


def _gathers_both(left: np.ndarray, right: np.ndarray, v: Any, dtype: Any) -> Any | None:
    """left @ v @ rightᵀ as ONE gather when both maps are shifts with borders (a convolution's
    tap on both sides of a pair quantity); None otherwise."""
    a, b = _single(left), _single(right)
    if a is None or b is None:
        return None
    out = v[..., jnp.asarray(a[0])[:, None], jnp.asarray(b[0])[None, :]]
    weight = np.outer(a[1], b[1])
    return out if np.all(weight == 1.0) else out * jnp.asarray(weight, dtype)


def _diagonal_of(value: Any, diagonal_only: bool) -> Any:
    return value[..., 0] if diagonal_only else jnp.diagonal(value, axis1=-2, axis2=-1)


class TensorEvaluator:
    """`diagonal` and `cross` for a template program's graph, with the generated module's
    interface (so `api.Compiled` runs either)."""

    def __init__(self, graph: KernelGraph, nngp: sympy.Expr, ntk: sympy.Expr) -> None:
        self.graph = graph
        self.analysis = (graph, nngp, ntk)
        self.shapes: dict[int, Shape] = {}
        self.formulas: dict[int, Any] = {}
        for node in graph.nodes:
            self.formulas[node.id] = self._formula(node)
            self.shapes[node.id] = self._shape(node)
        self.kernels = {"nngp": _Formula(nngp), "ntk": _Formula(ntk)}

        def direct(expr: sympy.Expr) -> set[int]:
            return {k for side, k in refs(expr) if side == "X"}

        self.nngp_nodes = closure(direct(nngp), graph, ("X",))
        self.ntk_nodes = closure(direct(ntk), graph, ("X",)) - self.nngp_nodes
        cross = self.nngp_nodes | self.ntk_nodes
        sided = {k for side, k in refs(nngp) | refs(ntk) if side != "X"}
        for k in cross:
            sided |= {j for side, j in refs(graph.nodes[k].formula) if side != "X"}
        self.sided = sided
        roots = sided | {k for _, k in refs(nngp) | refs(ntk)}
        self.diag_nodes = closure(roots, graph, ("X", "L", "R"))
        self.members = max((p * q for p, q in self.shapes.values()), default=1)
        self._jit_diagonal = jax.jit(self._diagonal)
        self._jit_cross = jax.jit(self._cross, static_argnames=("want_ntk", "paired"))

    # -- static shapes ---------------------------------------------------------------------

    def _ref_shape(self, ref: Ref) -> Shape:
        p, q = self.shapes[ref.node]
        if ref.side == "X":
            return (p, q)
        m = max(p, q)
        return (m, 1) if ref.side == "L" else (1, m)

    @staticmethod
    def _formula(node: Node) -> _Formula | None:
        """The elementwise part of a quantity: all of it, or what a map or total acts on."""
        f = node.formula
        if isinstance(f, Mapped | Total):
            return _Formula(f.inner)
        if isinstance(f, FamilyGram):
            return None
        expr = f.substituted() if isinstance(f, ClosedForm) else f
        if not isinstance(expr, sympy.Basic):
            raise TypeError(f"the tensor evaluator has no rule for {type(f).__name__}")
        return _Formula(expr)

    def _shape(self, node: Node) -> Shape:
        """Members (P, Q) of a quantity: a map's rows, a total's (1, 1), else the broadcast of
        what it reads."""
        f = node.formula
        if isinstance(f, Mapped):
            p = f.left.shape[0] if f.left is not None else f.shape[0]
            q = f.right.shape[0] if f.right is not None else f.shape[1]
            return (p, q)
        if isinstance(f, FamilyGram):
            return (len(f.left), len(f.right))
        if isinstance(f, Total):
            return (1, 1)
        p = q = 1
        for r in self.formulas[node.id].refs:
            rp, rq = self._ref_shape(r)
            p, q = max(p, rp), max(q, rq)
        return (p, q)

    # -- evaluation ----------------------------------------------------------------------

    def _node(self, ps: _Pass, node: Node) -> Any:
        f, shape = node.formula, self.shapes[node.id]
        if isinstance(f, FamilyGram):
            a = ps.x1[:, list(f.left)]
            b = ps.x2[:, list(f.right)]
            spec = "apd,bqd->abpq" if ps.grid else "npd,nqd->npq"
            return jnp.einsum(spec, a, b) / ps.x1.shape[-1]
        if isinstance(f, Mapped):
            v = ps.formula(self.formulas[node.id], f.shape)
            if f.left is not None and f.right is not None:
                both = _gathers_both(f.left.matrix, f.right.matrix, v, ps.dtype)
                if both is not None:
                    return both
            if f.left is not None:
                v = _apply(f.left.matrix, v, -2, ps.dtype)
            if f.right is not None:
                v = _apply(f.right.matrix, v, -1, ps.dtype)
            return v
        if isinstance(f, Total):
            inner = ps.formula(self.formulas[node.id], f.shape)
            return jnp.sum(inner, axis=(-2, -1), keepdims=True)
        return ps.formula(self.formulas[node.id], shape)

    def _run(self, ps: _Pass, nodes: set[int], own: bool, trace: dict | None) -> None:
        for k in sorted(nodes):
            node = self.graph.nodes[k]
            # Each quantity is materialised: XLA would otherwise fuse an expensive closed form
            # into every gather that reads it and compute it once per reader (measured: 2.2×
            # slower on a 3-layer CNN).
            ps.values[k] = jax.lax.optimization_barrier(self._node(ps, node))
            if own:  # the diagonal pass reads its own diagonals
                vec = _diagonal_of(ps.values[k], node.diagonal_only)
                ps.left[k] = ps.right[k] = vec
            if trace is not None:
                trace[k] = ps.values[k]

    def _kernel(self, ps: _Pass, name: str) -> Any:
        return ps.formula(self.kernels[name], (1, 1))[..., 0, 0]

    def _diagonal(self, x: Any, trace: dict | None = None) -> tuple[dict[int, Any], Any, Any]:
        ps = _Pass(x, x, grid=False)
        self._run(ps, self.diag_nodes, True, trace)
        sided = {k: ps.left[k] for k in sorted(self.sided)}
        return sided, self._kernel(ps, "nngp"), self._kernel(ps, "ntk")

    def _cross(
        self,
        x1: Any,
        x2: Any,
        L: dict,  # noqa: N803 - the generated module's names
        R: dict,  # noqa: N803
        want_ntk: bool = True,
        paired: bool = False,
        trace: dict | None = None,
    ) -> tuple[Any, Any]:
        ps = _Pass(x1, x2, grid=not paired)
        ps.left, ps.right = dict(L), dict(R)
        self._run(ps, self.nngp_nodes, False, trace)
        nngp = self._kernel(ps, "nngp")
        if not want_ntk:
            return nngp, None
        self._run(ps, self.ntk_nodes, False, trace)
        return nngp, self._kernel(ps, "ntk")

    # -- the generated module's interface ---------------------------------------------------

    def diagonal(self, x: Any, errors: Any = None, trace: dict | None = None) -> dict[Any, Any]:
        """Per-example quantities in blocks of a fixed number of examples (whatever N is, so
        K(x, x) is computed in the same lanes alone as in a batch: bitwise the same)."""
        if trace is not None:
            sided, nngp, ntk = self._diagonal(x, trace)
        else:
            rows = tiles.block_rows(self.members, cap=DIAGONAL_BLOCK)
            sided, nngp, ntk = tiles.by_rows(self._jit_diagonal, x, rows)
        return {**sided, "nngp": nngp, "ntk": ntk}

    def cross(
        self,
        x1: Any,
        x2: Any,
        L: dict,  # noqa: N803
        R: dict,  # noqa: N803
        want_ntk: bool = True,
        errors: Any = None,
        trace: dict | None = None,
        paired: bool = False,
    ) -> tuple[Any, Any]:
        L = {k: v for k, v in L.items() if isinstance(k, int)}  # noqa: N806
        R = {k: v for k, v in R.items() if isinstance(k, int)}  # noqa: N806
        if trace is not None:
            return self._cross(x1, x2, L, R, want_ntk, paired, trace)
        n1, n2 = x1.shape[0], x2.shape[0]
        if paired:

            def pairs(block: tuple) -> tuple[Any, Any]:
                a, b, left, right = block
                return self._jit_cross(a, b, left, right, want_ntk=want_ntk, paired=True)

            return tiles.by_rows(pairs, (x1, x2, L, R), self._pair_rows(n1))

        def tile(left: tuple, right: tuple) -> tuple[Any, Any]:
            return self._jit_cross(
                left[0], right[0], left[1], right[1], want_ntk=want_ntk, paired=False
            )

        per_tile = tiles.block_rows(self.members, multiple=1)
        cols = min(n2, per_tile)
        rows = min(n1, max(1, per_tile // cols))
        return tiles.by_tiles(tile, (x1, L), (x2, R), rows, cols)

    def pairs(
        self, x: Any, diag: dict, first: np.ndarray, second: np.ndarray, want_ntk: bool
    ) -> tuple[Any, Any]:
        """The kernels of the pairs (x[first[i]], x[second[i]]) (the upper triangle of K(X, X)),
        gathered block by block: memory follows the block, not the number of pairs."""

        def block(index: tuple[Any, Any]) -> tuple[Any, Any]:
            a, b = index
            left, right = per_example(diag, lambda v: v[a]), per_example(diag, lambda v: v[b])
            return self._jit_cross(x[a], x[b], left, right, want_ntk=want_ntk, paired=True)

        index = (jnp.asarray(first), jnp.asarray(second))
        return tiles.by_rows(block, index, self._pair_rows(len(first)))

    def _pair_rows(self, n: int) -> int:
        """Pairs per block: the memory bound, or all n pairs (rounded up to whole lanes)."""
        return min(tiles.block_rows(self.members), -(-n // 8) * 8)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return {"diagonal": self.diagonal, "cross": self.cross}[name]

    def size(self) -> KernelSize:
        """What one evaluation holds beyond its blocks (bounded by `tiles.BLOCK_NUMBERS`): the
        two kernels per pair of inputs, the member diagonals per input."""
        per_input = sum(max(self.shapes[k]) for k in self.sided)
        return KernelSize(pair_quantities=2, input_quantities=per_input, expansions=0)

    def describe(self) -> str:
        """The quantities, one line each, in evaluation order (what `c.source` shows)."""
        lines = ["# tpcompile: kernels over families, evaluated as tensors (codegen/tensor.py)"]
        for node in self.graph.nodes:
            p, q = self.shapes[node.id]
            kind = type(node.formula).__name__
            body = node.formula if isinstance(node.formula, sympy.Basic) else kind
            lines.append(f"# q{node.id} [{p}×{q}] {node.label}: {body}")
        return "\n".join(lines) + "\n"


def families_evaluator(
    program: ir.Program, options: NumericOptions | None = None, param: Parameterization = NTK
) -> TensorEvaluator | None:
    """The family path for `program`, or None where it does not apply: no family beyond the
    data has more than one member (MLPs, recurrences: the scalar path is as good), or the
    template cannot stand for the program yet (`ir.template.Unrollable`)."""
    try:
        tp = template(roll(program))
        if tp.is_trivial:
            return None
        graph, nngp, ntk = analyse_template(tp, options, param)
    except Unrollable:
        return None
    return TensorEvaluator(graph, nngp, ntk)


__all__ = ["TensorEvaluator", "families_evaluator"]
