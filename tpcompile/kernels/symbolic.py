"""Small structural tests and splits of sympy expressions used by the kernel rules.

Where this sits: below `expect.py` and `backward.py`; pure sympy, no knowledge of the program.
"""

from __future__ import annotations

import functools
import zlib

import mpmath
import sympy


def terms(expr: sympy.Expr, expand: bool = False) -> list[tuple[sympy.Expr, sympy.Expr]]:
    """expr as Σ coefficient · product, coefficients numbers. Products of sums are multiplied
    out only with `expand` (see the "expand" reduction)."""
    return list(_terms(sympy.sympify(expr), expand))


@functools.lru_cache(maxsize=4096)
def _terms(expr: sympy.Expr, expand: bool) -> tuple[tuple[sympy.Expr, sympy.Expr], ...]:
    # Cached: the same function (a gate, tanh(h[t])) is split once per pair it meets.
    expr = sympy.expand(expr) if expand else sympy.expand(expr, deep=False, mul=False)
    out = []
    for term in sympy.Add.make_args(expr):
        factors = sympy.Mul.make_args(term)
        coef = sympy.Mul(*(f for f in factors if f.is_number))  # 2/sqrt(pi), not just 2
        out.append((coef, sympy.Mul(*(f for f in factors if not f.is_number))))
    return tuple((c, t) for c, t in out if c != 0)


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
    if _surely_not_odd(expr, variables):
        return False
    flipped = expr.xreplace({v: -v for v in variables})
    return sympy.expand(flipped + expr) == 0


#: The digits of the numerical probe of `_surely_not_odd`.
_PROBE_DIGITS = 30


def _surely_not_odd(
    expr: sympy.Expr, variables: tuple[sympy.Symbol, ...] | list[sympy.Symbol]
) -> bool:
    """expr(z) + expr(-z) clearly nonzero at one point, in 30-digit arithmetic.

    Then expr is not odd, and `expand(expr(-z) + expr(z))` cannot be 0 either: a shortcut with
    the same answer as the symbolic test, which multiplies out every product of sums and grows
    exponentially with the nesting of a gated recurrence (a GRU's h[t]). Anything short of a
    clear answer (a function with no numerical value, a complex value, a value near 0) defers
    to the symbolic test.
    """
    if not expr.free_symbols <= set(variables):
        return False  # not what the probe is for: it flips every variable
    with mpmath.workdps(_PROBE_DIGITS):
        a, b = _value(expr, False), _value(expr, True)
        if a is None or b is None:
            return False
        return bool(abs(a + b) > mpmath.mpf(10) ** -12 * (abs(a) + abs(b)))


def _point(v: sympy.Symbol) -> mpmath.mpf:
    """Where the probe puts a variable: fixed by its name, in [0.5, 1.5), away from 0 and from
    the kinks of the table's functions (any point proves what it proves)."""
    return mpmath.mpf(0.5) + mpmath.mpf(zlib.crc32(v.name.encode()) % 10007) / 10007


@functools.lru_cache(maxsize=65536)
def _value(expr: sympy.Basic, flipped: bool) -> mpmath.mpf | None:
    """expr as a real number at the probe point (every variable negated if `flipped`), or None.

    Cached per subexpression: the functions of a recurrence share subtrees, which a walk of the
    tree would visit again and again, and meet in many pairs.
    """
    value: object = None
    try:
        if expr.is_Symbol:
            value = -_point(expr) if flipped else _point(expr)
        elif expr.is_Number or (expr.is_number and not expr.args):  # 2/3, pi
            value = _mpf(expr.evalf(_PROBE_DIGITS))
        elif expr.is_Add or expr.is_Mul or expr.is_Pow:
            parts = [_value(a, flipped) for a in expr.args]
            if all(p is not None for p in parts):
                if expr.is_Add:
                    value = mpmath.fsum(parts)
                elif expr.is_Mul:
                    value = mpmath.fprod(parts)
                elif parts[0] > 0 or parts[1] == int(parts[1]):
                    value = parts[0] ** parts[1]
        elif expr.args:  # a function: sympy evaluates it at numbers
            parts = [_value(a, flipped) for a in expr.args]
            if all(p is not None for p in parts):
                value = _mpf(expr.func(*(sympy.Float(p, _PROBE_DIGITS) for p in parts)))
    except (TypeError, ValueError, ArithmeticError, NotImplementedError):
        value = None
    if not isinstance(value, mpmath.mpf) or not mpmath.isfinite(value):
        return None
    return value


def _mpf(x: sympy.Basic) -> mpmath.mpf | None:
    if x.is_Float:
        return mpmath.mpf(x._mpf_)
    if x.is_Rational:
        return mpmath.mpf(x.p) / x.q
    return None
