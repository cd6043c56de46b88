"""Small structural tests and splits of sympy expressions used by the kernel rules.

Where this sits: below `expect.py` and `backward.py`; pure sympy, no knowledge of the program.
"""

from __future__ import annotations

import sympy


def terms(expr: sympy.Expr, expand: bool = False) -> list[tuple[sympy.Expr, sympy.Expr]]:
    """expr as Σ coefficient · product, coefficients numbers. Products of sums are multiplied
    out only with `expand` (see the "expand" reduction)."""
    expr = sympy.sympify(expr)
    expr = sympy.expand(expr) if expand else sympy.expand(expr, deep=False, mul=False)
    out = []
    for term in sympy.Add.make_args(expr):
        factors = sympy.Mul.make_args(term)
        coef = sympy.Mul(*(f for f in factors if f.is_number))  # 2/sqrt(pi), not just 2
        out.append((coef, sympy.Mul(*(f for f in factors if not f.is_number))))
    return [(c, t) for c, t in out if c != 0]


def is_polynomial(expr: sympy.Expr) -> bool:
    """A monomial in G symbols (with a number): what Isserlis' theorem integrates."""
    return all(
        x.is_number
        or x.is_Symbol
        or (x.is_Pow and x.base.is_Symbol and x.exp.is_Integer and x.exp >= 0)
        for x in sympy.Mul.make_args(expr)
    )


def expand_powers(expr: sympy.Expr) -> list[sympy.Symbol]:
    """A monomial's symbols, each repeated as often as its power."""
    out: list[sympy.Symbol] = []
    for x in sympy.Mul.make_args(expr):
        if x.is_Symbol:
            out.append(x)
        elif x.is_Pow:
            out.extend([x.base] * int(x.exp))
    return out


def is_odd(expr: sympy.Expr, variables: tuple[sympy.Symbol, ...] | list[sympy.Symbol]) -> bool:
    """True if expr(-z) == -expr(z) symbolically (a conservative test)."""
    flipped = expr.xreplace({v: -v for v in variables})
    return sympy.expand(flipped + expr) == 0
