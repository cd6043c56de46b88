"""Evaluating a template program's kernel graph as tensors over member pairs (DESIGN §6).

Where this sits: the back end of the family path, beside `codegen/module.py` (the scalar path's
emitter). The analysis of a template program (`kernels/families.py`) gives a graph whose
quantities are arrays over pairs of members (`codegen/pairs.py`); this module evaluates it with
the generated module's interface, `diagonal(x)` and `cross(x1, x2, L, R, ...)`, block by block
of the N1 × N2 grid (`runtime/tiles.py`), each pass in stages (`codegen/stages.py`): compiled
functions whose number and size follow the families, not the positions, and eager calls of
the runtime's numerical rules (`codegen/numerics.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy

from tpcompile import ir
from tpcompile.codegen.inline import inlined
from tpcompile.codegen.module import closure
from tpcompile.codegen.numerics import NumericRule, joint_values
from tpcompile.codegen.pairs import (
    Formula,
    Pass,
    Shape,
    apply_map,
    batched,
    diagonal_of,
    gathers_both,
    swap,
)
from tpcompile.codegen.stages import plan
from tpcompile.ir.families import roll
from tpcompile.ir.template import Unrollable, template
from tpcompile.kernels.families import analyse_template
from tpcompile.kernels.graph import (
    SIDES,
    ClosedForm,
    Eye,
    FamilyGram,
    KernelGraph,
    Mapped,
    Node,
    NumericSpec,
    Ref,
    Total,
    refs,
)
from tpcompile.kernels.param import NTK, Parameterization
from tpcompile.kernels.plan import NumericOptions
from tpcompile.resources import KernelSize
from tpcompile.runtime import per_example, tiles

#: Examples per block of the diagonal pass, at most (a multiple of 8: whole vector lanes).
DIAGONAL_BLOCK = 64
Errors = dict[int, list[Any]] | None


@jax.jit
def _pick(x: Any, sided: dict[int, Any], a: Any, b: Any) -> tuple[Any, Any, Any, Any]:
    """The inputs and member diagonals of the pairs (a[i], b[i]), in one dispatch."""
    return x[a], x[b], per_example(sided, lambda v: v[a]), per_example(sided, lambda v: v[b])


class TensorEvaluator:
    """`diagonal` and `cross` for a template program's graph, with the generated module's
    interface (so `api.Compiled` runs either)."""

    def __init__(self, graph: KernelGraph, nngp: sympy.Expr, ntk: sympy.Expr) -> None:
        self.analysis = (graph, nngp, ntk)
        graph, (nngp, ntk) = inlined(graph, (nngp, ntk))
        self.graph = graph
        self.shapes: dict[int, Shape] = {}
        self.formulas: dict[int, Formula | None] = {}
        self.numeric = {
            node.id: NumericRule(node.id, node.formula)
            for node in graph.nodes
            if isinstance(node.formula, NumericSpec)
        }
        self.expressions: dict[sympy.Expr, Formula] = {}  # what numerical rules read
        for node in graph.nodes:
            self.formulas[node.id] = self._formula(node)
            self.shapes[node.id] = self._shape(node)
        self.kernels = {"nngp": Formula(nngp), "ntk": Formula(ntk)}

        def direct(expr: sympy.Expr) -> set[int]:
            return {k for side, k in refs(expr) if side == "X"}

        self.nngp_nodes = closure(direct(nngp), graph, ("X",))
        self.ntk_nodes = closure(direct(ntk), graph, ("X",)) - self.nngp_nodes
        cross = self.nngp_nodes | self.ntk_nodes
        sided = {k for side, k in refs(nngp) | refs(ntk) if side != "X"}
        for k in cross:
            sided |= {j for side, j in refs(graph.nodes[k].formula) if side != "X"}
        self.sided = sided
        kernel_reads = {k for _, k in refs(nngp) | refs(ntk)}
        self.diag_nodes = closure(sided | kernel_reads, graph, SIDES)
        self.members = max((p * q for p, q in self.shapes.values()), default=1)
        self.plans = {
            "diagonal": plan(graph, self.diag_nodes, sided | kernel_reads, SIDES),
            "nngp": plan(graph, self.nngp_nodes, kernel_reads, ("X",)),
            "ntk": plan(graph, cross, kernel_reads, ("X",)),
        }
        self._jit_stage = jax.jit(self._stage, static_argnames=("which", "index", "paired"))

    # -- static shapes ---------------------------------------------------------------------

    def _ref_shape(self, ref: Ref) -> Shape:
        p, q = self.shapes[ref.node]
        if ref.side == "X":
            return (p, q)
        m = max(p, q)
        return (m, 1) if ref.side == "L" else (1, m)

    @staticmethod
    def _formula(node: Node) -> Formula | None:
        """The elementwise part of a quantity: all of it, or what a map or total acts on."""
        f = node.formula
        if isinstance(f, Mapped | Total):
            return Formula(f.inner)
        if isinstance(f, FamilyGram | Eye | NumericSpec):
            return None
        expr = f.substituted() if isinstance(f, ClosedForm) else f
        if not isinstance(expr, sympy.Basic):
            raise TypeError(f"the tensor evaluator has no rule for {type(f).__name__}")
        return Formula(expr)

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
        if isinstance(f, Eye):
            return (f.size, f.size)
        if isinstance(f, Total):
            return (1, 1)
        p = q = 1
        for side, k in refs(f):
            rp, rq = self._ref_shape(Ref(side, k))
            p, q = max(p, rp), max(q, rq)
        return (p, q)

    # -- evaluation ----------------------------------------------------------------------

    def _node(self, ps: Pass, node: Node, errors: Errors) -> Any:
        f, shape = node.formula, self.shapes[node.id]
        if isinstance(f, NumericSpec):
            value = self.numeric[node.id](lambda e: self._read(ps, e), errors)
            return ps.full(value, shape) if isinstance(value, jax.Array) else value
        if isinstance(f, FamilyGram):
            a = ps.x1[:, list(f.left)]
            b = ps.x2[:, list(f.right)]
            spec = "apd,bqd->pqab" if ps.grid else "npd,nqd->pqn"
            return jnp.einsum(spec, a, b) / ps.x1.shape[-1]
        if isinstance(f, Eye):
            return ps.full(batched(np.eye(f.size), 2 + len(ps.batch), ps.dtype), shape)
        formula = self.formulas[node.id]
        assert formula is not None
        if isinstance(f, Mapped):
            v = ps.formula(formula, f.shape)
            if f.left is not None and f.right is not None:
                both = gathers_both(f.left.matrix, f.right.matrix, v, ps.dtype)
                if both is not None:
                    return both
            if f.left is not None:
                v = apply_map(f.left.matrix, v, 0, ps.dtype)
            if f.right is not None:
                v = apply_map(f.right.matrix, v, 1, ps.dtype)
            return v
        if isinstance(f, Total):
            return jnp.sum(ps.formula(formula, f.shape), axis=(0, 1), keepdims=True)
        return ps.formula(formula, shape)

    def _read(self, ps: Pass, expr: sympy.Expr) -> Any:
        """A reference expression of a numerical quantity (its covariance entries, its Hermite
        coefficients), broadcast only as far as its references."""
        if isinstance(expr, Ref):
            return ps.read(expr)
        f = self.expressions.setdefault(expr, Formula(expr))
        return f.value if f.fn is None else f.fn(*(ps.read(r) for r in f.refs))

    def _run(
        self, ps: Pass, nodes: tuple[int, ...], own: bool, trace: dict | None, errors: Errors
    ) -> None:
        # quantities over one joint law: one runtime call a law
        grouped = joint_values(self.numeric, nodes, lambda e: self._read(ps, e), errors)
        grouped = {k: ps.full(v, self.shapes[k]) for k, v in grouped.items()}
        for k in sorted(nodes):
            node = self.graph.nodes[k]
            value = grouped[k] if k in grouped else self._node(ps, node, errors)
            if k not in self.numeric:
                # materialised: within a stage too, measured faster (XLA fuses less)
                value = jax.lax.optimization_barrier(value)
            ps.values[k] = value
            if own:  # the diagonal pass reads its own diagonals
                ps.left[k] = ps.right[k] = diagonal_of(value, node.diagonal_only)
            if trace is not None:
                trace[k] = value

    def _kernel(self, ps: Pass, name: str) -> Any:
        return ps.formula(self.kernels[name], (1, 1))[0, 0]

    def _stage(
        self,
        x1: Any,
        x2: Any,
        L: dict,  # noqa: N803 - the generated module's names
        R: dict,  # noqa: N803
        carried: dict[int, Any],
        which: Hashable,
        index: int,
        paired: bool,
        errors: Errors = None,
    ) -> tuple[dict[int, Any], Any, Any]:
        """Stage `index` of pass `which` ("diagonal", or the cross pass for "nngp" or "ntk"):
        its quantities from the earlier stages' (`carried`). Returns what later stages read, and
        after the last stage the kernels (and for the diagonal pass, the member diagonals the
        cross pass reads, batch first)."""
        plan_ = self.plans[which]
        ps = self._pass(x1, x2, L, R, which, paired)
        ps.values = dict(carried)
        if which == "diagonal":
            for k, v in carried.items():
                ps.left[k] = ps.right[k] = diagonal_of(v, self.graph.nodes[k].diagonal_only)
        self._run(ps, plan_.stages[index].nodes, which == "diagonal", None, errors)
        if index < len(plan_.stages) - 1:
            return {k: ps.values[k] for k in plan_.keep[index]}, None, None
        return self._results(ps, which)

    def _pass(self, x1: Any, x2: Any, L: dict, R: dict, which: str, paired: bool) -> Pass:  # noqa: N803
        """A pass's state; a cross pass reads the member diagonals L, R (members first)."""
        if which == "diagonal":
            return Pass(x1, x2, grid=False)
        ps = Pass(x1, x2, grid=not paired)
        ps.left, ps.right = {k: swap(v) for k, v in L.items()}, {k: swap(v) for k, v in R.items()}
        return ps

    def _results(self, ps: Pass, which: str) -> tuple[dict[int, Any], Any, Any]:
        """The kernels of a finished pass, after the member diagonals (batch first) that the
        diagonal pass hands to the cross pass."""
        own = which == "diagonal"
        sided = {k: swap(ps.left[k]) for k in sorted(self.sided)} if own else {}
        ntk = None if which == "nngp" else self._kernel(ps, "ntk")
        return sided, self._kernel(ps, "nngp"), ntk

    def _staged(
        self,
        x1: Any,
        x2: Any,
        L: dict,
        R: dict,
        which: str,
        paired: bool,
        errors: Errors,  # noqa: N803
    ) -> tuple[Any, Any, Any]:
        """Every stage of a pass: compiled ones jitted, numerical ones eagerly."""
        carried: dict[int, Any] = {}
        out: tuple[Any, Any, Any] = ({}, None, None)
        for index, stage in enumerate(self.plans[which].stages):
            args = (x1, x2, L, R, carried)
            if stage.eager:
                out = self._stage(*args, which=which, index=index, paired=paired, errors=errors)
            else:
                out = self._jit_stage(*args, which=which, index=index, paired=paired)
            carried = out[0]
        return out

    def _traced(
        self, x1: Any, x2: Any, L: dict, R: dict, which: str, paired: bool, trace: dict
    ) -> tuple:  # noqa: N803
        """One whole pass, eagerly, recording every quantity (for diagnosis)."""
        ps = self._pass(x1, x2, L, R, which, paired)
        nodes = tuple(k for stage in self.plans[which].stages for k in stage.nodes)
        self._run(ps, nodes, which == "diagonal", trace, None)
        return self._results(ps, which)

    # -- the generated module's interface ---------------------------------------------------

    def diagonal(self, x: Any, errors: Errors = None, trace: dict | None = None) -> dict[Any, Any]:
        """Per-example quantities in blocks of a fixed number of examples (whatever N is, so
        K(x, x) is computed in the same lanes alone as in a batch: bitwise the same). A graph
        with numerical quantities runs on the whole batch at once: their rules choose their
        sizes (Hermite terms) over the batch, as the scalar path's do."""
        if trace is not None:
            sided, nngp, ntk = self._traced(x, x, {}, {}, "diagonal", True, trace)
        else:

            def block(xb: Any) -> tuple:
                return self._staged(xb, xb, {}, {}, "diagonal", True, errors)

            rows = tiles.block_rows(self.members, cap=DIAGONAL_BLOCK)
            whole = self.numeric and len(x) > rows
            sided, nngp, ntk = block(x) if whole else tiles.by_rows(block, x, rows)
        return {**sided, "nngp": nngp, "ntk": ntk}

    def cross(
        self,
        x1: Any,
        x2: Any,
        L: dict,  # noqa: N803
        R: dict,  # noqa: N803
        want_ntk: bool = True,
        errors: Errors = None,
        trace: dict | None = None,
        paired: bool = False,
    ) -> tuple[Any, Any]:
        L = {k: v for k, v in L.items() if isinstance(k, int)}  # noqa: N806
        R = {k: v for k, v in R.items() if isinstance(k, int)}  # noqa: N806
        which = "ntk" if want_ntk else "nngp"
        if trace is not None:
            return self._traced(x1, x2, L, R, which, paired, trace)[1:]
        n1, n2 = x1.shape[0], x2.shape[0]
        if paired:

            def pairs(block: tuple) -> tuple[Any, Any]:
                return self._staged(*block, which, True, errors)[1:]

            return tiles.by_rows(pairs, (x1, x2, L, R), self._pair_rows(n1))

        def tile(left: tuple, right: tuple) -> tuple[Any, Any]:
            return self._staged(left[0], right[0], left[1], right[1], which, False, errors)[1:]

        per_tile = tiles.block_rows(self.members, multiple=1)
        cols = min(n2, per_tile)
        rows = min(n1, max(1, per_tile // cols))
        return tiles.by_tiles(tile, (x1, L), (x2, R), rows, cols)

    def pairs(
        self,
        x: Any,
        diag: dict,
        first: np.ndarray,
        second: np.ndarray,
        want_ntk: bool,
        errors: Errors = None,
    ) -> tuple[Any, Any]:
        """The kernels of the pairs (x[first[i]], x[second[i]]) (the upper triangle of K(X, X)),
        gathered block by block: memory follows the block, not the number of pairs."""
        sided = per_example(diag, lambda v: v)
        which = "ntk" if want_ntk else "nngp"

        def block(index: tuple[Any, Any]) -> tuple[Any, Any]:
            return self._staged(*_pick(x, sided, *index), which, True, errors)[1:]

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
