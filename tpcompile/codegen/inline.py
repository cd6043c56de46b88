"""Linear quantities inlined into their readers, for the family evaluator.

Where this sits: between the analysis of a template program (`kernels/families.py`) and its
evaluation (`codegen/tensor.py`). The analysis names every step: a tap's covariance scaled by
its variance (`X3/3`), the sum of the taps (`X4 + X7 + X11 + X13`). Evaluated as they are, each
is an array over member pairs, written out and read back: a third of conv1d's quantities, and
of its time, were such scalings and sums. A quantity whose formula is a linear combination of
references is exact to substitute into whatever reads it, at any side (read at (a, a), a linear
formula is the same formula of its references read at (a, a)), so the evaluator computes it
inside its readers instead; closed forms, maps and numerical quantities stay quantities.
"""

from __future__ import annotations

import copy
import dataclasses

import sympy

from tpcompile.kernels.graph import ClosedForm, KernelGraph, Mapped, Node, Ref, Total, to_side

#: At most this many references in an inlined formula: a reader's formula grows by it.
MOST_REFERENCES = 8


def _linear(formula: object) -> bool:
    """A sum of numbers times references (the forward pass's scalings and sums of taps)."""
    if not isinstance(formula, sympy.Add | sympy.Mul):
        return False
    terms = sympy.Add.make_args(formula)
    if len(formula.atoms(Ref)) > MOST_REFERENCES:
        return False
    for term in terms:
        coeff, rest = term.as_coeff_Mul()
        if not (rest.is_number or isinstance(rest, Ref)):
            return False
    return True


def inlined(
    graph: KernelGraph, kernels: tuple[sympy.Expr, ...]
) -> tuple[KernelGraph, tuple[sympy.Expr, ...]]:
    """A copy of `graph`, and the `kernels`, whose formulas read the linear quantities'
    formulas instead of the quantities (recursively). Numerical quantities keep their
    references (the quantities they read are still computed)."""
    linear = {n.id for n in graph.nodes if _linear(n.formula)}
    done: dict[int, sympy.Expr] = {}

    def expand(expr: sympy.Expr) -> sympy.Expr:
        expr = sympy.sympify(expr)
        if expr.is_number:
            return expr
        swaps = {r: to_side(body(r.node), r.side) for r in expr.atoms(Ref) if r.node in linear}
        return expr.xreplace(swaps) if swaps else expr

    def body(k: int) -> sympy.Expr:
        if k not in done:
            done[k] = expand(graph.nodes[k].formula)
        return done[k]

    def rewrite(node: Node) -> Node:
        f = node.formula
        if isinstance(f, Mapped | Total):
            f = dataclasses.replace(f, inner=expand(f.inner))
        elif isinstance(f, ClosedForm):
            f = dataclasses.replace(f, args=tuple(expand(a) for a in f.args))
        elif isinstance(f, sympy.Basic):
            f = expand(f)
        return dataclasses.replace(node, formula=f)

    out = copy.copy(graph)
    out.nodes = [rewrite(n) for n in graph.nodes]
    return out, tuple(expand(k) for k in kernels)


__all__ = ["MOST_REFERENCES", "inlined"]
