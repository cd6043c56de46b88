"""Gaussian expectations E[f(Z(a)) g(Z(b))] of functions of G values: the reduction engine.

Where this sits: the forward rules (`forward.py`) ask for the second moments of matmul
arguments, the backward pass (`backward.py`) for the forward factors of its terms. `expect`
expands both sides into sums of products (linearity), factors each product over independent
random families, and hands every factor to the reduction order, written ONCE as `REDUCTIONS`:

    polynomial (Isserlis / Stein, with means) → parity (odd, zero means: 0) → expand (products
    of sums whose every piece is exact) → table (closed forms, `closed_forms/`) → numeric

A one-sided factor (a function of one input only) is a mean, a per-input quantity read at (a, a)
or (b, b), reduced by the same list. `is_exact` asks the same rules whether a factor needs
numerics, so "is it exact?" can never disagree with what is computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from tpcompile import ir
from tpcompile.kernels.closed_forms import U, V, mean_expectation, pair_expectation
from tpcompile.kernels.forward import cov, mean, pair_cov, sources
from tpcompile.kernels.graph import ClosedForm, Formula, KernelGraph, to_side
from tpcompile.kernels.numeric import numeric_spec
from tpcompile.kernels.symbolic import expand_powers, is_odd, is_polynomial, terms


def expect(graph: KernelGraph, f: sympy.Expr, g: sympy.Expr) -> sympy.Expr:
    """E[f(Z(a)) g(Z(b))] for functions of G values (numbers allowed on either side)."""
    key = ("E", f, g)
    if key not in graph.memo:
        # One Add of all the terms: growing a sum by `+=` re-sorts it at every step.
        right = terms(g)
        graph.memo[key] = sympy.Add(
            *(
                _scaled(cf * cg, _expect_product(graph, tf, tg))
                for cf, tf in terms(f)
                for cg, tg in right
            )
        )
    return graph.memo[key]


def _scaled(c: sympy.Expr, e: sympy.Expr) -> sympy.Expr:
    """c · e, without building the product when c is the integer 1 (as sympy would return e)."""
    return e if c is sympy.S.One else c * e


def _expect_product(graph: KernelGraph, f: sympy.Expr, g: sympy.Expr) -> sympy.Expr:
    result = sympy.Integer(1)
    for left, right in _independent_groups(graph, f, g):
        result *= _expect_group(graph, left, right)
    return result


def _independent_groups(
    graph: KernelGraph, f: sympy.Expr, g: sympy.Expr
) -> list[tuple[sympy.Expr, sympy.Expr]]:
    """Split E[Π f_i · Π g_j] into factors over disjoint random families."""
    factors = [("L", x) for x in sympy.Mul.make_args(f) if not x.is_number]
    factors += [("R", x) for x in sympy.Mul.make_args(g) if not x.is_number]
    groups: list[tuple[set[str], list[tuple[str, sympy.Expr]]]] = []
    for side, x in factors:
        src = set(_factor_sources(graph, x))
        merged = [grp for grp in groups if grp[0] & src]
        for grp in merged:
            groups.remove(grp)
            src |= grp[0]
        members = [m for grp in merged for m in grp[1]] + [(side, x)]
        groups.append((src, members))
    return [
        (
            sympy.Mul(*(x for s, x in members if s == "L")),
            sympy.Mul(*(x for s, x in members if s == "R")),
        )
        for _, members in groups
    ]


def _factor_sources(graph: KernelGraph, x: sympy.Expr) -> frozenset[str]:
    """The random families of one factor; memoised, since a factor such as tanh(h[t]) meets
    every other value of a recurrence."""
    key = ("sources", x)
    if key not in graph.facts:
        graph.facts[key] = frozenset().union(*(sources(graph, s.name) for s in x.free_symbols))
    return graph.facts[key]


# ---- the reduction order ------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One factor to reduce: E[f(Z(a)) g(Z(b))], or the mean E[f(Z(a))] when `g` is 1 and `gv`
    is empty. `fv`, `gv` are the G symbols of each side, `means` their means."""

    f: sympy.Expr
    g: sympy.Expr
    fv: tuple[sympy.Symbol, ...]
    gv: tuple[sympy.Symbol, ...]
    means: dict[sympy.Symbol, sympy.Expr]

    @property
    def is_mean(self) -> bool:
        return not self.gv

    @property
    def zero_mean(self) -> bool:
        return all(m == 0 for m in self.means.values())


def _query(graph: KernelGraph, f: sympy.Expr, g: sympy.Expr) -> Query:
    fv = tuple(sorted(f.free_symbols, key=lambda s: s.name))
    gv = tuple(sorted(g.free_symbols, key=lambda s: s.name))
    return Query(f, g, fv, gv, {s: mean(graph, s.name) for s in (*fv, *gv)})


@dataclass(frozen=True)
class Reduction:
    """One step of the reduction order: `applies` decides, `build` gives the formula.
    `exact`: an exact reduction (numerics are not). `pairs_only`: never used for a mean.
    `recursive`: defined through other reductions, so `is_exact` does not consult it."""

    name: str
    applies: Callable[[KernelGraph, Query], bool]
    build: Callable[[KernelGraph, Query], Formula]
    exact: bool = True
    pairs_only: bool = False
    recursive: bool = False


def _isserlis(graph: KernelGraph, q: Query) -> sympy.Expr:
    variables = [("L", s) for s in expand_powers(q.f)] + [("R", s) for s in expand_powers(q.g)]
    return isserlis(graph, variables, q.means)


def isserlis(
    graph: KernelGraph,
    variables: list[tuple[str, sympy.Symbol]],
    means: dict[sympy.Symbol, sympy.Expr],
) -> sympy.Expr:
    """E[Π (μ_i + z_i)] for jointly Gaussian z, by Stein's lemma applied to the first factor:
    E[x · rest] = μ_x E[rest] + Σ_y Cov(x, y) E[rest without y]."""
    if not variables:
        return sympy.Integer(1)
    (first, *rest) = variables
    total = means[first[1]] * isserlis(graph, rest, means) if means[first[1]] != 0 else 0
    for i, other in enumerate(rest):
        c = pair_cov(graph, first, other)
        if c != 0:
            total += c * isserlis(graph, rest[:i] + rest[i + 1 :], means)
    return sympy.expand(total)


def _pieces(q: Query) -> list[tuple[sympy.Expr, sympy.Expr, sympy.Expr]]:
    return [(cf * cg, tf, tg) for cf, tf in terms(q.f, True) for cg, tg in terms(q.g, True)]


def _expand_applies(graph: KernelGraph, q: Query) -> bool:
    # e.g. (g + h)·relu(z) or erf(u)(1 + u): every piece has an exact form.
    pieces = _pieces(q)
    return len(pieces) > 1 and all(is_exact(graph, tf, tg) for _, tf, tg in pieces)


def _expand(graph: KernelGraph, q: Query) -> sympy.Expr:
    return sum((c * _expect_product(graph, tf, tg) for c, tf, tg in _pieces(q)), 0)


def _closed(graph: KernelGraph, q: Query) -> sympy.Expr | None:
    """The table's closed form of a zero-mean one-variable factor, in S11, S12, S22."""
    if not q.zero_mean or len(q.fv) != 1 or len(q.gv) > 1:
        return None
    fu = q.f.xreplace({q.fv[0]: U})
    if q.is_mean:
        return mean_expectation(fu, U)
    return pair_expectation(fu, q.g.xreplace({q.gv[0]: V}), U, V)


def _table(graph: KernelGraph, q: Query) -> Formula:
    template = _closed(graph, q)
    assert template is not None
    x = q.fv[0]
    args: tuple[sympy.Expr, ...] = (to_side(cov(graph, x.name, x.name), "L"),)
    pair = ir.format_expr(q.f.xreplace({x: U}))
    if not q.is_mean:
        y = q.gv[0]
        args += (cov(graph, x.name, y.name), to_side(cov(graph, y.name, y.name), "R"))
        pair += "·" + ir.format_expr(q.g.xreplace({y: V}))
    if template.is_number:
        return template
    if all(sympy.sympify(a).is_number for a in args):
        return ClosedForm(template, args, pair).substituted()
    return ClosedForm(template, args, pair)


REDUCTIONS: tuple[Reduction, ...] = (
    Reduction("polynomial", lambda graph, q: is_polynomial(q.f) and is_polynomial(q.g), _isserlis),
    Reduction(
        "parity",
        lambda graph, q: q.zero_mean and is_odd(q.f * q.g, (*q.fv, *q.gv)),
        lambda graph, q: sympy.Integer(0),
    ),
    Reduction("expand", _expand_applies, _expand, pairs_only=True, recursive=True),
    Reduction("table", lambda graph, q: _closed(graph, q) is not None, _table),
    Reduction(
        "numeric",
        lambda graph, q: True,
        lambda graph, q: numeric_spec(
            graph, q.f, None if q.is_mean else q.g, list(q.fv), list(q.gv), q.means
        ),
        exact=False,
    ),
)


def _reduce(graph: KernelGraph, q: Query) -> tuple[Reduction, Formula]:
    rule = _rule(graph, q)
    return rule, rule.build(graph, q)


def _rule(graph: KernelGraph, q: Query) -> Reduction:
    """The first rule of `REDUCTIONS` that applies to q.

    Which rule applies depends only on the shape of f and g and on which of their variables have
    mean zero, not on the names of the variables: E[tanh(h[t]) tanh(h[s])'] meets the same rule
    for every t and s. So the choice is memoised on q with its variables renamed canonically (a
    renaming of all variables at once, so a variable shared by both sides stays shared), and the
    symbolic tests (parity, expansion, the table's lookup) run once per shape.
    """
    symbols = sorted(set(q.fv) | set(q.gv), key=lambda s: s.name)
    rename = {s: sympy.Symbol(f"_z{i}", **s.assumptions0) for i, s in enumerate(symbols)}
    key = (
        "rule",
        q.f.xreplace(rename),
        q.g.xreplace(rename),
        tuple(q.means[s] == 0 for s in symbols),
        q.is_mean,
    )
    if key not in graph.facts:
        graph.facts[key] = next(
            i
            for i, rule in enumerate(REDUCTIONS)
            if not (q.is_mean and rule.pairs_only) and rule.applies(graph, q)
        )
    return REDUCTIONS[graph.facts[key]]


def is_exact(graph: KernelGraph, f: sympy.Expr, g: sympy.Expr) -> bool:
    """Whether E[f g'] reduces exactly (polynomial, parity, table): no numerics, no nodes."""
    q = _query(graph, f, g)
    if not q.fv or not q.gv:
        q = _query(graph, f if q.fv else g, sympy.S.One)
    return any(
        rule.applies(graph, q)
        for rule in REDUCTIONS
        if rule.exact and not rule.recursive and not (q.is_mean and rule.pairs_only)
    )


def _expect_group(graph: KernelGraph, f: sympy.Expr, g: sympy.Expr) -> sympy.Expr:
    key = ("group", f, g)
    if key in graph.memo:
        return graph.memo[key]
    q = _query(graph, f, g)
    if not q.fv or not q.gv:  # a one-sided mean: a diagonal quantity, read at (a,a) or (b,b)
        one, side = (f, "L") if q.fv else (g, "R")
        return graph.memo.setdefault(key, to_side(mean_of(graph, one), side))
    rule, formula = _reduce(graph, q)
    if rule.name == "expand":  # a sum of other quantities, not a quantity of its own
        return graph.memo.setdefault(key, formula)
    return graph.node(key, formula, f"E[{_text(f)} · {_text(g)}']")


def mean_of(graph: KernelGraph, f: sympy.Expr) -> sympy.Expr:
    """E[f(Z(a))] as a diagonal quantity (references read at (a, a))."""
    key = ("mean", f)
    if key in graph.memo:
        return graph.memo[key]
    _, formula = _reduce(graph, _query(graph, f, sympy.S.One))
    return graph.node(key, formula, f"E[{_text(f)}]", diagonal_only=True)


@functools.lru_cache(maxsize=4096)
def _text(f: sympy.Expr) -> str:
    """`ir.format_expr`, cached: a function is named in the label of every pair it meets."""
    return ir.format_expr(f)
