"""What one term of an expanded side of E[f(u) g(v)] can be: the atoms of the closed-form table.

Where this sits: `table.py` splits each side into terms (`parse_side`) and integrates pairs of
atoms: Gaussian-exponential polynomials (`Qep`), kinked powers (`Kink`), named smooth functions
(`Smooth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy

from tpcompile.prims.functions import Gelu, GeluPrime, Relu, ReluPow, Step

# ------------------------------------------------------------------------------------------------
# Atoms: what one term of an expanded side can be.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Qep:
    """x**p * exp(-a x**2) * sum_k w_k exp(beta_k x): a Gaussian-exponential polynomial.

    Real exponentials give real beta; sin/cos are expanded by Euler into imaginary beta with
    complex weights, and the real part is taken at the end.
    """

    p: int
    a: sympy.Expr
    waves: tuple[tuple[sympy.Expr, sympy.Expr], ...]

    @property
    def poly_only(self) -> bool:
        """A plain power x**p (a constant when p == 0)."""
        return self.a.is_zero and self.waves == ((sympy.S.One, sympy.S.Zero),)


@dataclass(frozen=True)
class Kink:
    """ReluPow(sign*x, n) for n >= 1, Step(sign*x) for n == 0."""

    n: int
    sign: int


@dataclass(frozen=True)
class Smooth:
    """A named smooth atom name(scale*x), name in {"erf", "gelu", "geluprime"}."""

    name: str
    scale: sympy.Expr


Atom = Qep | Kink | Smooth


@dataclass(frozen=True)
class Term:
    """coeff * expr; expr is the atom as a sympy expression of var (kept for Stein and parity)."""

    coeff: sympy.Expr
    atom: Atom
    expr: sympy.Expr
    var: sympy.Symbol


CONST = Qep(0, sympy.S.Zero, ((sympy.S.One, sympy.S.Zero),))
SMOOTH_NAMES: dict[type, str] = {sympy.erf: "erf", Gelu: "gelu", GeluPrime: "geluprime"}


def numeric_real(x: sympy.Expr) -> bool:
    return bool(x.is_number and x.is_extended_real and x.is_finite)


def poly_coeffs(arg: sympy.Expr, var: sympy.Symbol, degree: int) -> list[sympy.Expr] | None:
    """[c0, c1, ..., c_degree] if arg is a polynomial in var of at most that degree with real
    numeric coefficients, else None."""
    try:
        poly = sympy.Poly(arg, var)
    except sympy.PolynomialError:
        return None
    if poly.degree() > degree:
        return None
    coeffs = [poly.coeff_monomial(var**k) for k in range(degree + 1)]
    if not all(numeric_real(c) for c in coeffs):
        return None
    # Float(0.0) != 0 in sympy; exact zeros keep the structural tests below simple and correct.
    return [sympy.S.Zero if c.is_zero else c for c in coeffs]


def linear_scale(arg: sympy.Expr, var: sympy.Symbol) -> sympy.Expr | None:
    """b if arg == b*var with b a nonzero real number (zero means: no offsets allowed)."""
    coeffs = poly_coeffs(arg, var, 1)
    if coeffs is None or not coeffs[0].is_zero or coeffs[1].is_zero:
        return None
    return coeffs[1]


def classify(dep: sympy.Expr, var: sympy.Symbol) -> tuple[sympy.Expr, Atom] | None:
    """Split a product of var-dependent factors into (numeric coefficient, atom), or None."""
    coeff: sympy.Expr = sympy.S.One
    p = 0
    a: sympy.Expr = sympy.S.Zero
    lin: sympy.Expr = sympy.S.Zero
    trig: list[tuple[str, sympy.Expr, sympy.Expr]] = []
    kinks: list[tuple[int, int]] = []
    smooth: list[tuple[str, sympy.Expr]] = []

    for factor in sympy.Mul.make_args(dep):
        base, exp = factor, sympy.S.One
        if factor.is_Pow:
            base, exp = factor.base, factor.exp
            if not (exp.is_Integer and exp > 0):
                return None
        times = int(exp)
        if base == var:
            p += times
        elif isinstance(base, sympy.exp):
            cs = poly_coeffs(base.args[0], var, 2)
            if cs is None or cs[2] > 0:
                return None  # not Gaussian-integrable (exp(+x**2)) or not polynomial
            coeff *= sympy.exp(times * cs[0])
            lin += times * cs[1]
            a -= times * cs[2]
        elif isinstance(base, sympy.sin | sympy.cos):
            cs = poly_coeffs(base.args[0], var, 1)
            if cs is None:
                return None
            kind = "sin" if isinstance(base, sympy.sin) else "cos"
            trig.extend([(kind, cs[1], cs[0])] * times)
        elif isinstance(base, Relu | Step | ReluPow):
            b = linear_scale(base.args[0], var)
            if b is None:
                return None
            n = 1 if isinstance(base, Relu) else 0 if isinstance(base, Step) else int(base.args[1])
            # Positive homogeneity: ReluPow(b x, n) = |b|**n ReluPow(sign(b) x, n).
            coeff *= abs(b) ** (n * times)
            kinks.append((n * times, 1 if b > 0 else -1))
        elif type(base) in SMOOTH_NAMES:
            b = linear_scale(base.args[0], var)
            if b is None or times != 1:
                return None
            smooth.append((SMOOTH_NAMES[type(base)], b))
        else:
            return None

    if smooth:
        if len(smooth) > 1 or p or not a.is_zero or not lin.is_zero or trig or kinks:
            return None
        return coeff, Smooth(*smooth[0])

    if kinks:
        if not a.is_zero or not lin.is_zero or trig:
            return None
        signs = {s for _, s in kinks}
        if len(signs) > 1:
            # relu(x)*relu(-x) and friends vanish identically (Step(0) = 0).
            return sympy.S.Zero, CONST
        sign = signs.pop()
        # x**p on the half-line sign*x > 0 is sign**p (sign*x)**p: it raises the kinked order.
        return coeff * sign**p, Kink(sum(n for n, _ in kinks) + p, sign)

    # Euler: cos(c x + d) = (e^{i d} e^{i c x} + e^{-i d} e^{-i c x})/2, sin likewise with 1/(2i).
    waves: dict[sympy.Expr, sympy.Expr] = {sympy.S.Zero: sympy.S.One}
    for kind, c, d in trig:
        new: dict[sympy.Expr, sympy.Expr] = {}
        plus = sympy.exp(sympy.I * d) / 2
        minus = sympy.exp(-sympy.I * d) / 2
        if kind == "sin":
            plus, minus = plus / sympy.I, -minus / sympy.I
        for beta, w in waves.items():
            for shift, weight in ((sympy.I * c, plus), (-sympy.I * c, minus)):
                key = sympy.expand(beta + shift)
                new[key] = sympy.expand(new.get(key, sympy.S.Zero) + w * weight)
        waves = {k: w for k, w in new.items() if not w.is_zero}
    if not waves:
        return sympy.S.Zero, CONST
    items = tuple(sorted(((w, sympy.expand(beta + lin)) for beta, w in waves.items()), key=str))
    return coeff, Qep(p, a, items)


def parse_side(f: Any, var: sympy.Symbol, other: sympy.Symbol) -> list[Term] | None:
    """Linear decomposition of f (a function of var only) into terms coeff * atom."""
    f = sympy.sympify(f)
    if f.has(other):
        return None
    terms: list[Term] = []
    for term in sympy.Add.make_args(sympy.expand(f)):
        if term.is_zero:
            continue
        coeff, dep = term.as_independent(var, as_Add=False)
        if dep == 1:
            terms.append(Term(coeff, CONST, sympy.S.One, var))
            continue
        classified = classify(dep, var)
        if classified is None:
            return None
        extra, atom = classified
        if extra.is_zero:
            continue
        terms.append(Term(coeff * extra, atom, dep, var))
    return terms


def parity(expr: sympy.Expr, var: sympy.Symbol) -> int | None:
    """0 if expr is even in var, 1 if odd, None if neither (or undecided)."""
    mirrored = expr.xreplace({var: -var})
    if sympy.expand(mirrored - expr) == 0:
        return 0
    if sympy.expand(mirrored + expr) == 0:
        return 1
    return None
