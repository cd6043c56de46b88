"""`tpcompile show`: the derived kernel recursion, printed as mathematics.

One line per quantity of the kernel graph, in the order they are computed: the derivation a
person would otherwise do by hand. A quantity read at (a, b) is written plainly; at (a, a) or
(b, b), the variance of one input, it carries `[a,a]` or `[b,b]`.
"""

from __future__ import annotations

import sympy

from tpcompile.ir import format_expr
from tpcompile.kernels.graph import ClosedForm, DataGram, NumericSpec, side_symbol


def _renamer(graph) -> dict[sympy.Symbol, sympy.Symbol]:
    names = {}
    for node in graph.nodes:
        for side, suffix in (("X", ""), ("L", "[a,a]"), ("R", "[b,b]")):
            names[side_symbol(side, node.id)] = sympy.Symbol(node.label + suffix)
    return names


def _text(expr: sympy.Expr, names: dict, latex: bool) -> str:
    expr = sympy.sympify(expr).xreplace(names)
    return sympy.latex(expr) if latex else format_expr(expr)


def derivation(compiled, latex: bool = False) -> str:
    graph = compiled.graph
    names = _renamer(graph)
    lines = [
        f"# Infinite-width kernels of {compiled.filename}, derived by the Master Theorem",
        "# a, b: two inputs; [a,a], [b,b]: a quantity of one input with itself.",
        "# Σ: covariance of G values; E[f · g']: f at input a, g at input b; "
        "D: covariance of backward vectors (gradient independence).",
    ]
    templates: dict[str, ClosedForm] = {}
    for node in graph.nodes:
        f = node.formula
        if isinstance(f, DataGram):
            rhs = "data inner product"
        elif isinstance(f, NumericSpec):
            # Marked as numerical, with the rule and the quantities it reads (an error estimate
            # per quantity comes with `kernel_fn(..., return_errors=True)`).
            corners = (f.cov[0][0], f.cov[0][-1], f.cov[-1][-1])
            read = dict.fromkeys(
                _text(e, names, latex) for e in (*(f.coefficients or ()), *corners)
            )
            more = ", ..." if len(f.cov) > 2 else ""
            rhs = f"numerical ({f.method}): {f.description}; from {', '.join(read)}{more}"
        elif isinstance(f, ClosedForm):
            templates.setdefault(f.pair, f)
            rhs = f"E[{f.pair}]({', '.join(_text(a, names, latex) for a in f.args)})"
        else:
            rhs = _text(f, names, latex)
        where = "  [per input]" if node.diagonal_only else ""
        lines.append(f"{node.label} = {rhs}{where}")
    lines.append(f"NNGP = {_text(compiled.nngp_expr, names, latex)}")
    lines.append(f"NTK = {_text(compiled.ntk_expr, names, latex)}")
    if templates:
        lines.append("# Closed forms used, (u, v) ~ N(0, [[S11, S12], [S12, S22]]), u ~ N(0, S11):")
    for pair, cf in templates.items():
        params = ", ".join(["S11", "S12", "S22"][: len(cf.args)])
        lines.append(f"E[{pair}]({params}) = {_text(cf.template, {}, latex)}")
    return "\n".join(lines) + "\n"


__all__ = ["derivation"]
