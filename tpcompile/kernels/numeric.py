"""The numerical rule of a Gaussian expectation with no exact form: a `NumericSpec` node.

Where this sits: the last reduction of `expect.py`. The choice of method (Mehler series, split
Gauss-Legendre, tensor Gauss-Hermite, Monte Carlo) is `plan.py`'s, from the smoothness of each
side; this module gathers what the runtime needs: the joint covariance of the Gaussians as
references to other quantities, their means, and for the Mehler series the per-input Hermite
coefficients, themselves a diagonal quantity shared by every pair that uses the same function.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from tpcompile import ir
from tpcompile.kernels.forward import cov, mean, pair_cov
from tpcompile.kernels.graph import KernelGraph, to_side
from tpcompile.kernels.plan import (
    FunctionInfo,
    NumericSpec,
    describe,
    is_smooth,
    multi_method,
    pair_method,
)


def numeric_spec(
    graph: KernelGraph,
    f: sympy.Expr,
    g: sympy.Expr | None,
    fv: list[sympy.Symbol],
    gv: list[sympy.Symbol],
    means: dict[sympy.Symbol, sympy.Expr],
) -> NumericSpec:
    """The numerical rule for E[f g'] (or E[f] when g is None), chosen by `plan`."""
    options = graph.options
    lvars = tuple(sympy.Symbol(f"u{i}", real=True) for i in range(len(fv)))
    rvars = tuple(sympy.Symbol(f"w{i}", real=True) for i in range(len(gv)))
    tagged = [("L", s) for s in fv] + [("R", s) for s in gv]
    spec = NumericSpec(
        f.xreplace(dict(zip(fv, lvars, strict=True))),
        None if g is None else g.xreplace(dict(zip(gv, rvars, strict=True))),
        lvars,
        rvars,
        tuple(tuple(pair_cov(graph, x, y) for y in tagged) for x in tagged),
        tuple(means[s] for s in (*fv, *gv)),
        options=options,
    )
    if len(fv) == 1 and len(gv) <= 1:
        fi = describe(f, fv[0])
        if g is None:
            method = "mc" if fi.kind == "irregular" or options.method == "mc" else "panel"
            return replace(spec, method=method, kinks=(fi.kinks, ()))
        gi = describe(g, gv[0])
        method = pair_method(fi, gi, options)
        if method != "mehler":
            return replace(spec, method=method, kinks=(fi.kinks, gi.kinks))
        # A polynomial side has exactly degree + 1 Hermite coefficients: the series ends there.
        degrees = [i.degree for i in (fi, gi) if i.kind == "polynomial"]
        order = min(degrees) + 1 if degrees else None
        coefficients = (
            hermite(graph, f, fv[0], fi, order),
            to_side(hermite(graph, g, gv[0], gi, order), "R"),
        )
        return replace(
            spec,
            method="mehler",
            kinks=(fi.kinks, gi.kinks),
            coefficients=coefficients,
            order=order,
        )
    smooth = is_smooth(f) and (g is None or is_smooth(g))
    return replace(spec, method=multi_method(smooth, len(fv) + len(gv), options))


def hermite(
    graph: KernelGraph, f: sympy.Expr, var: sympy.Symbol, info: FunctionInfo, order: int | None
) -> sympy.Expr:
    """The per-input Hermite coefficients of f, a function of the G value `var`: a diagonal
    quantity (an L reference), computed once per input and shared by every pair using f."""
    u = sympy.Symbol("u0", real=True)
    spec = NumericSpec(
        f.xreplace({var: u}),
        None,
        (u,),
        (),
        ((to_side(cov(graph, var.name, var.name), "L"),),),
        (mean(graph, var.name),),
        method="coefficients",
        kinks=(info.kinks, ()),
        order=order,
        complete=info.kind == "polynomial" and order is not None and info.degree < order,
        options=graph.options,
    )
    label = f"H[{ir.format_expr(f)}]" + (f"[:{order}]" if order else "")
    return graph.node(("hermite", f, order), spec, label, diagonal_only=True)
