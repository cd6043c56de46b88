"""Closed-form Gaussian expectations E[f(u) g(v)], written once as sympy expressions.

Where this sits in the pipeline: the kernel analysis reduces every NNGP/NTK quantity to
expectations of functions of jointly Gaussian, zero-mean G values; after expanding sums it asks
`pair_expectation(f, g, u, v)` for each pair of atoms (and `mean_expectation` for single ones).
What comes back is a sympy expression in `S11, S12, S22` (the 2x2 covariance of (u, v)) that the
code generator prints to JAX (`codegen/jaxprint.py`). `None` means "no closed form known": the
analysis then falls back to quadrature or Monte Carlo (THEORY §6).

Three exact engines cover the table, chosen by the shape of the atoms:
- Gaussian-exponential polynomials, u**p * exp(-a*u**2 + b*u) * (products of sin/cos of linear
  arguments): exact by completing the square and differentiating the moment generating function
  (Isserlis/Wick, exp*exp, sin/cos, exp(-u**2) from erf', GeluPrime' all fall here). These never
  need a guard: the normaliser det(I + 2 diag(a, b) S) is >= 1 for a, b >= 0.
- Positively homogeneous kinked powers, ReluPow(±u, m) (Step for m = 0) against each other or
  against plain powers v**n: the arc-cosine kernels (Cho & Saul), computed for any orders by
  integrating in polar coordinates, then rewritten with guarded building blocks.
- Named smooth atoms: erf (Williams' arcsine kernel, and erf x step as an orthant probability),
  exact GELU and its derivative (THEORY §5), and Stein's lemma for polynomial x smooth atom:
  E[v**q phi(u)] = S12 E[v**(q-1) phi'(u)] + (q-1) S22 E[v**(q-2) phi(u)].
Plus linearity, numeric coefficients and scales (phi(b*u) is phi of a Gaussian with variance
b**2 S11), and parity (odd x even is exactly 0 for zero means).

Numerical safety (THEORY §10 trap 7): angles are `atan2(SafeSqrt(S11*S22 - S12**2), S12)`, which is
exactly 0 on the diagonal and differentiable inside; no arccos, no division by sqrt(1 - c**2),
no unguarded division by sqrt(S11*S22). Ratios that are bounded but 0/0 at a zero variance (they
occur only between kinked atoms of different orders) go through `SafeDiv`. Every formula is then
finite at |correlation| = 1 and at zero variances. At a zero variance a kinked expectation is
discontinuous (Step(0) = 0 but E[Step(u)] = 1/2 for any S11 > 0); the formulas return a finite
limit value there, not necessarily the value at the degenerate point.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import sympy

from tpcompile.kernels.closed_forms.atoms import (
    Kink,
    Qep,
    Smooth,
    Term,
    parity,
    parse_side,
)
from tpcompile.prims.functions import SafeDiv, SafeSqrt

__all__ = [
    "S11",
    "S12",
    "S22",
    "U",
    "V",
    "mean_expectation",
    "pair_expectation",
]

S11, S12, S22 = sympy.symbols("S11 S12 S22", real=True)
#: The Gaussian variables of the table's cases (f is a function of U, g of V).
U, V = sympy.symbols("u v", real=True)

_PI = sympy.pi


def _gap() -> sympy.Expr:
    """S11*S22 - S12**2 = det(S) >= 0, written as q²(1 - c)(1 + c) with c = S12/q, q = √(S11 S22).

    The plain difference is ill-conditioned where it matters most: compilers contract
    `S11*S22 - S12**2` into a fused multiply-add, which returns the rounding error of S12² (≈1e-17
    S²) instead of 0 for identical inputs, and √det then moves the angle by 1e-8. In IEEE
    arithmetic √(s·s) = s exactly, so c is exactly ±1 for identical (or opposite) inputs and this
    form is exactly 0 there, FMA or not.
    """
    q = sympy.sqrt(S11 * S22)
    c = SafeDiv(S12, q)
    return S11 * S22 * (1 - c) * (1 + c)


def _angle() -> sympy.Expr:
    """theta = arccos(S12/sqrt(S11*S22)) in [0, pi], written so it is finite everywhere and
    exactly 0 when S12**2 = S11*S22 > 0 (atan2(0, positive) = 0; atan2(0, 0) = 0 in JAX)."""
    return sympy.atan2(SafeSqrt(_gap()), S12)


def _swap(expr: sympy.Expr) -> sympy.Expr:
    """The same expectation with the roles of the two variables exchanged."""
    return expr.xreplace({S11: S22, S22: S11})


def _scale(expr: sympy.Expr, b1: sympy.Expr, b2: sympy.Expr) -> sympy.Expr:
    """E[f(b1 u) g(b2 v)] from E[f(u) g(v)]: (b1 u, b2 v) is Gaussian with scaled covariance."""
    if b1 == 1 and b2 == 1:
        return expr
    return expr.xreplace({S11: b1**2 * S11, S12: b1 * b2 * S12, S22: b2**2 * S22})


# ------------------------------------------------------------------------------------------------
# Engine 1: Gaussian-exponential polynomials.
# ------------------------------------------------------------------------------------------------

# Placeholders: the tilted covariance S' (real) and the MGF arguments.
_A11, _A12, _A22 = sympy.symbols("_A11 _A12 _A22", real=True)
_BETA, _GAMMA = sympy.symbols("_beta _gamma")


@cache
def _mgf_poly(p: int, q: int) -> sympy.Expr:
    """P with d^p/dbeta^p d^q/dgamma^q exp(Q) = P exp(Q), Q = (A11 b^2 + 2 A12 b g + A22 g^2)/2.

    Differentiating the moment generating function p and q times brings down u**p v**q.
    """
    poly: sympy.Expr = sympy.S.One
    dq_beta = _A11 * _BETA + _A12 * _GAMMA
    dq_gamma = _A12 * _BETA + _A22 * _GAMMA
    for _ in range(p):
        poly = sympy.expand(sympy.diff(poly, _BETA) + poly * dq_beta)
    for _ in range(q):
        poly = sympy.expand(sympy.diff(poly, _GAMMA) + poly * dq_gamma)
    return poly


def _re_im(expr: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """Real and imaginary parts of a polynomial in the real placeholders with complex numbers."""
    re_part: sympy.Expr = sympy.S.Zero
    im_part: sympy.Expr = sympy.S.Zero
    for term in sympy.Add.make_args(sympy.expand(expr)):
        num, rest = term.as_independent(_A11, _A12, _A22, as_Add=False)
        re_part += sympy.re(num) * rest
        im_part += sympy.im(num) * rest
    return re_part, im_part


def _qep_pair(f: Qep, g: Qep) -> sympy.Expr:
    """E[f(u) g(v)] for two Gaussian-exponential polynomials.

    exp(-a u^2 - b v^2) times the N(0, S) density is det(I + 2 diag(a, b) S)^(-1/2) times the
    N(0, S') density with S' = (S^-1 + 2 diag(a, b))^-1 = S (I + 2 diag(a, b) S)^-1 (no inverse of
    S needed, so singular S is fine). Under N(0, S'), E[u^p v^q exp(beta u + gamma v)] is the
    (p, q)-th derivative of the MGF exp((beta, gamma) S' (beta, gamma)^T / 2).
    """
    poly = _mgf_poly(f.p, g.p)
    total: sympy.Expr = sympy.S.Zero
    for w1, b1 in f.waves:
        for w2, b2 in g.waves:
            x_re, x_im = _re_im(w1 * w2 * poly.xreplace({_BETA: b1, _GAMMA: b2}))
            quad = (_A11 * b1**2 + 2 * _A12 * b1 * b2 + _A22 * b2**2) / 2
            q_re, q_im = _re_im(quad)
            # Re[(x_re + i x_im) e^{q_re + i q_im}]
            total += sympy.exp(q_re) * (x_re * sympy.cos(q_im) - x_im * sympy.sin(q_im))
    a, b = f.a, g.a
    if a.is_zero and b.is_zero:
        # power_exp=False keeps each exponential whole: exp(-S11/2)*exp(S12) would overflow to
        # 0*inf for large variances where exp(S12 - S11/2) is perfectly finite.
        return sympy.expand(total.xreplace({_A11: S11, _A12: S12, _A22: S22}), power_exp=False)
    # det(I + 2 diag(a, b) S) = 1 + 2a S11 + 2b S22 + 4ab det(S) >= 1: no guard needed.
    delta = 1 + 2 * a * S11 + 2 * b * S22 + 4 * a * b * _gap()
    tilted = {
        _A11: (S11 + 2 * b * _gap()) / delta,
        _A12: S12 / delta,
        _A22: (S22 + 2 * a * _gap()) / delta,
    }
    return total.xreplace(tilted) / sympy.sqrt(delta)


# ------------------------------------------------------------------------------------------------
# Engine 2: kinked powers (arc-cosine kernels of any orders).
# ------------------------------------------------------------------------------------------------

_PHI, _TH = sympy.symbols("_phi _theta", real=True)
_R1, _R2 = sympy.symbols("_r1 _r2", positive=True)  # sqrt(S11), sqrt(S22)
_SG = sympy.symbols("_sg", nonnegative=True)  # SafeSqrt(det S) = sqrt(S11 S22) sin(theta)
_THETA = sympy.symbols("_Theta", real=True)  # placeholder for the guarded angle


@cache
def _angular_integral(m: int, n: int, both: bool) -> sympy.Expr:
    """I(theta) = integral of cos(phi)**m cos(phi - theta)**n over the region where the kinked
    factors are positive: phi in (theta - pi/2, pi/2) if both are kinked, (-pi/2, pi/2) if only
    the first is (theta in [0, pi]). Returned as a polynomial in sin(theta), cos(theta), theta."""
    lower = _TH - _PI / 2 if both else -_PI / 2
    total: sympy.Expr = sympy.S.Zero
    for j in range(n + 1):
        # cos(phi - theta)**n expanded binomially in cos(phi) cos(theta) + sin(phi) sin(theta).
        anti = sympy.integrate(sympy.cos(_PHI) ** (m + n - j) * sympy.sin(_PHI) ** j, _PHI)
        value = anti.subs(_PHI, _PI / 2) - anti.subs(_PHI, lower)
        total += sympy.binomial(n, j) * sympy.cos(_TH) ** (n - j) * sympy.sin(_TH) ** j * value
    return sympy.expand(sympy.expand_trig(total))


def _root_power(s: sympy.Expr, k: int) -> sympy.Expr:
    """sqrt(s)**k written as s**(k//2) * SafeSqrt(s)**(k%2): exact powers where possible."""
    return s ** (k // 2) * SafeSqrt(s) ** (k % 2)


@cache
def _kink_pair(m: int, n: int, both: bool) -> sympy.Expr:
    """E[ReluPow(u, m) h(v)] with h = ReluPow(v, n) if both else v**n (Step for order 0).

    Polar coordinates: with u = sqrt(S11) r cos(phi), v = sqrt(S22) r cos(phi - theta),
    E = S11^(m/2) S22^(n/2) R_{m+n} I(theta) / (2 pi), R_k = int r^(k+1) e^{-r^2/2} dr
    = 2^(k/2) Gamma(k/2 + 1). Then sin/cos(theta) = SafeSqrt(det S)/q, S12/q (q = sqrt(S11 S22))
    are substituted and the powers of q cancel for equal orders (giving the familiar algebraic
    forms); what does not cancel is guarded by SafeDiv.
    """
    radial = 2 ** sympy.Rational(m + n, 2) * sympy.gamma(sympy.Rational(m + n, 2) + 1)
    angular = _angular_integral(m, n, both).xreplace(
        {
            sympy.cos(_TH): S12 / (_R1 * _R2),
            sympy.sin(_TH): _SG / (_R1 * _R2),
        }
    )
    angular = angular.xreplace({_TH: _THETA})
    expr = sympy.expand(_R1**m * _R2**n * radial * angular / (2 * _PI))
    # SafeSqrt(det S)**2 = S11 S22 - S12**2 keeps only first powers of the guarded root.
    expr = sympy.expand(
        expr.replace(
            lambda e: e.is_Pow and e.base == _SG and e.exp.is_Integer and e.exp >= 2,
            lambda e: _SG ** (e.exp % 2) * (_R1**2 * _R2**2 - S12**2) ** (e.exp // 2),
        )
    )
    exact: sympy.Expr = sympy.S.Zero
    guarded: dict[tuple[int, int], sympy.Expr] = {}
    for term in sympy.Add.make_args(expr):
        powers = term.as_powers_dict()
        e1, e2 = int(powers.get(_R1, 0)), int(powers.get(_R2, 0))
        rest = term.xreplace({_R1: 1, _R2: 1})
        numerator = rest * _root_power(S11, max(e1, 0)) * _root_power(S22, max(e2, 0))
        if e1 >= 0 and e2 >= 0:
            exact += numerator
        else:
            key = (max(-e1, 0), max(-e2, 0))
            guarded[key] = guarded.get(key, sympy.S.Zero) + numerator
    for (d1, d2), numerator in sorted(guarded.items()):
        exact += SafeDiv(sympy.factor_terms(numerator), _root_power(S11, d1) * _root_power(S22, d2))
    return exact.xreplace({_THETA: _angle(), _SG: SafeSqrt(_gap())})


# ------------------------------------------------------------------------------------------------
# Engine 3: named smooth atoms.
# ------------------------------------------------------------------------------------------------


def _erf_erf() -> sympy.Expr:
    # Williams: (2/pi) arcsin(2 S12 / sqrt((1 + 2 S11)(1 + 2 S22))), as an atan2 whose second
    # argument is >= sqrt(1 + 2 S11 + 2 S22) >= 1, so no guard and no singular derivative.
    return 2 / _PI * sympy.atan2(2 * S12, sympy.sqrt((1 + 2 * S11) * (1 + 2 * S22) - 4 * S12**2))


def _erf_step() -> sympy.Expr:
    # erf(u) = 2 Phi(sqrt(2) u) - 1 and E[Phi(sqrt(2) u) 1{v > 0}] = P(sqrt(2) u - e > 0, v > 0)
    # (e ~ N(0, 1) independent) = 1/4 + arcsin(rho)/(2 pi), so E = arcsin(rho)/pi with
    # rho = sqrt(2) S12 / sqrt((1 + 2 S11) S22). As atan2: finite when S22 = 0.
    return sympy.atan2(sympy.sqrt(2) * S12, SafeSqrt(S22 + 2 * _gap())) / _PI


def _gelu_parts() -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
    """p = S11 S22, P = (1 + S11)(1 + S22), delta = sqrt(P - S12**2) >= 1 (THEORY §5)."""
    big = (1 + S11) * (1 + S22)
    return S11 * S22, big, sympy.sqrt(big - S12**2)


def _gelu_gelu() -> sympy.Expr:
    p, big, delta = _gelu_parts()
    ang = sympy.atan2(S12, delta)
    return ((S12**2 + p * delta**2) / (big * delta) + S12 * ang) / (2 * _PI) + S12 / 4


def _geluprime_geluprime() -> sympy.Expr:
    p, big, delta = _gelu_parts()
    ang = sympy.atan2(S12, delta)
    return (
        (1 / delta**2 + (1 - p) / big + 1) * S12 / (2 * _PI * delta)
        + sympy.S(1) / 4
        + ang / (2 * _PI)
    )


def _smooth_mean(name: str) -> sympy.Expr:
    if name == "erf":
        return sympy.S.Zero  # odd function, zero mean
    if name == "gelu":
        # Stein: E[u Phi(u)] = S11 E[phi(u)] = S11 / sqrt(2 pi (1 + S11)).
        return S11 / sympy.sqrt(2 * _PI * (1 + S11))
    # E[Phi(u)] = 1/2 by symmetry, E[u phi(u)] = 0 (odd).
    return sympy.S.Half


_SMOOTH_PAIRS = {
    ("erf", "erf"): _erf_erf,
    ("gelu", "gelu"): _gelu_gelu,
    ("geluprime", "geluprime"): _geluprime_geluprime,
}


# ------------------------------------------------------------------------------------------------
# Dispatch.
# ------------------------------------------------------------------------------------------------


def _pair_atoms(t1: Term, t2: Term) -> sympy.Expr | None:
    """E[t1.expr(u) t2.expr(v)] (coefficients excluded); u has variance S11, v has S22."""
    f, g = t1.atom, t2.atom

    if isinstance(f, Qep) and isinstance(g, Qep):
        return _qep_pair(f, g)

    if isinstance(f, Kink) and isinstance(g, Kink):
        return _kink_pair(f.n, g.n, True).xreplace({S12: f.sign * g.sign * S12})
    if isinstance(f, Kink) and isinstance(g, Qep) and g.poly_only:
        return _kink_pair(f.n, g.p, False).xreplace({S12: f.sign * S12})
    if isinstance(g, Kink) and isinstance(f, Qep) and f.poly_only:
        result = _pair_atoms(t2, t1)
        return None if result is None else _swap(result)

    # Zero means: (u, v) and (-u, -v) have the same law, so odd x even vanishes.
    pf, pg = parity(t1.expr, t1.var), parity(t2.expr, t2.var)
    if pf is not None and pg is not None and pf != pg:
        return sympy.S.Zero

    if isinstance(f, Smooth) and isinstance(g, Qep) and g.poly_only:
        if g.p == 0:
            return _scale(_smooth_mean(f.name), f.scale, 1)
        return _stein(t1, g.p)
    if isinstance(g, Smooth) and isinstance(f, Qep) and f.poly_only:
        result = _pair_atoms(t2, t1)
        return None if result is None else _swap(result)

    if isinstance(f, Smooth) and isinstance(g, Smooth):
        build = _SMOOTH_PAIRS.get((f.name, g.name))
        return None if build is None else _scale(build(), f.scale, g.scale)

    if isinstance(f, Smooth) and f.name == "erf" and isinstance(g, Kink) and g.n == 0:
        return _scale(_erf_step(), f.scale, g.sign)
    if isinstance(g, Smooth) and g.name == "erf" and isinstance(f, Kink) and f.n == 0:
        return _swap(_scale(_erf_step(), g.scale, f.sign))

    return None


def _stein(smooth: Term, q: int) -> sympy.Expr | None:
    """E[phi(u) v**q] = S12 E[phi'(u) v**(q-1)] + (q-1) S22 E[phi(u) v**(q-2)] (Stein's lemma
    applied to v; valid because phi is smooth, unlike Step whose autodiff derivative is 0)."""
    u, v = smooth.var, sympy.Dummy("v", real=True)
    first = _pair_exprs(sympy.diff(smooth.expr, u), v ** (q - 1), u, v)
    if first is None:
        return None
    result = S12 * first
    if q >= 2:
        second = _pair_exprs(smooth.expr, v ** (q - 2), u, v)
        if second is None:
            return None
        result += (q - 1) * S22 * second
    return result


def _pair_exprs(f: Any, g: Any, u: sympy.Symbol, v: sympy.Symbol) -> sympy.Expr | None:
    side_f = parse_side(f, u, v)
    side_g = parse_side(g, v, u)
    if side_f is None or side_g is None:
        return None
    total: sympy.Expr = sympy.S.Zero
    for t1 in side_f:
        for t2 in side_g:
            value = _pair_atoms(t1, t2)
            if value is None:
                return None
            total += t1.coeff * t2.coeff * value
    return total


@lru_cache(maxsize=4096)
def _pair_cached(f: sympy.Expr, g: sympy.Expr, u: sympy.Symbol, v: sympy.Symbol) -> Any:
    return _pair_exprs(f, g, u, v)


def pair_expectation(
    f: sympy.Expr, g: sympy.Expr, u: sympy.Symbol, v: sympy.Symbol
) -> sympy.Expr | None:
    """E[f(u) g(v)] for (u, v) ~ N(0, [[S11, S12], [S12, S22]]) (ZERO means), as an expression in
    S11, S12, S22; None if no closed form is known.

    f may depend only on u and g only on v. Sums are expanded here (linearity) and coefficients
    free of u and v pass through; each term must be a recognised atom (module docstring).
    """
    if u == v:
        raise ValueError("pair_expectation needs two distinct variables")
    return _pair_cached(sympy.sympify(f), sympy.sympify(g), u, v)


# The second variable of a mean: g = 1 does not depend on it, so the result has S11 only.
_MEAN_PARTNER = sympy.Dummy("mean_partner", real=True)


def mean_expectation(f: sympy.Expr, u: sympy.Symbol) -> sympy.Expr | None:
    """E[f(u)] for u ~ N(0, S11); None if unknown."""
    return _pair_cached(sympy.sympify(f), sympy.S.One, u, _MEAN_PARTNER)
