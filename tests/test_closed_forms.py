"""Tests for the closed-form table (`tpcompile.kernels.closed_forms`), the primitives
(`tpcompile.prims.functions`), their JAX printing (`tpcompile.codegen.jaxprint`) and the rule
table (`tpcompile.lang.builtins`).

Every closed form is checked against an independent numerical reference: the integrand is
evaluated with numpy/scipy (not with tpcompile's printer), and the Gaussian integral is done by
piecewise Gauss-Legendre quadrature that splits at every kink (THEORY §6.1: condition on u, split
the v-integral where v = 0, and split the u-integral at u = 0), so kinked functions converge as
fast as smooth ones (`split_pair` of tests/quadrature_reference.py). `TABLE_CASES` drives the
tests, so a new entry or a new rule is covered automatically.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from quadrature_reference import density_dblquad, split_mean, split_pair
from scipy import special

from tpcompile import prims
from tpcompile.codegen.jaxprint import lambdify_jax, to_jax
from tpcompile.kernels.closed_forms import (
    S11,
    S12,
    S22,
    U,
    V,
    mean_expectation,
    pair_expectation,
)
from tpcompile.kernels.closed_forms.cases import table_cases
from tpcompile.lang.builtins import RULES, rule_names
from tpcompile.prims.functions import (
    Gelu,
    GeluPrime,
    Relu,
    ReluPow,
    SafeDiv,
    SafeSqrt,
    Sigmoid,
    Softplus,
    Step,
)

TABLE_CASES = table_cases()


SIGMA = (S11, S12, S22)
CASE_IDS = [label for label, _, _ in TABLE_CASES]

# Covariances (S11, S12, S22): moderate, strongly correlated (c = 0.95), negatively correlated
# with unequal variances, and very unequal variances. Each test loops over all of them (one test
# per table entry keeps the suite fast: the cost is per-call JAX dispatch, not arithmetic).
COVARIANCES = [
    (1.0, 0.5, 1.5),
    (1.2, 0.95 * math.sqrt(1.2 * 0.8), 0.8),
    (0.7, -0.6 * math.sqrt(0.7 * 1.9), 1.9),
    (2.0, 0.3, 0.25),
]

# Degenerate covariances: identical or opposite inputs (|c| = 1, det = 0 up to rounding) and
# zero variances (zero input, no bias).
DEGENERATE = [
    (1.0, 1.0, 1.0),
    (1.0, -1.0, 1.0),
    (2.0, 1.0, 0.5),
    (2.0, -1.0, 0.5),
    (0.3, math.sqrt(0.3 * 0.7), 0.7),
    (0.3, -math.sqrt(0.3 * 0.7), 0.7),
    (0.0, 0.0, 1.0),
    (1.0, 0.0, 0.0),
    (0.0, 0.0, 0.0),
]

# ------------------------------------------------------------------------------------------------
# Independent numerical reference.
# ------------------------------------------------------------------------------------------------

# NumPy versions of the recorded functions (`tpcompile.prims`), each checked against sympy's
# arbitrary-precision evaluation in tests/test_prims.py; sympy.lambdify uses these, so the
# reference shares no code with tpcompile's JAX printer.
_NUMPY_PRIMITIVES: dict[str, Callable[..., np.ndarray]] = {
    p.function.__name__: p.numpy for p in prims.records() if p.function and p.numpy
}


def numpy_fn(expr: sympy.Expr, var: sympy.Symbol) -> Callable[[np.ndarray], np.ndarray]:
    fn = sympy.lambdify([var], expr, modules=[_NUMPY_PRIMITIVES, "scipy", "numpy"])
    return lambda x: np.broadcast_to(np.asarray(fn(x), dtype=float), np.shape(x))


# The reference is `split_pair` of quadrature_reference: Gauss-Legendre on each smooth piece (the
# z1-integral split at z1 = 0, u's kink and where the conditional mean of v crosses 0; for each z1
# the z2-integral split where v = 0, g's kink), integrand truncated at |z| = 12 standard
# deviations (the Gaussian tail beyond is < 1e-32, far below every tolerance even with exp(u)
# factors). Every piece is smooth (entire, in fact), so the rule converges geometrically; 160
# nodes per piece reproduce the results of 240 nodes to ~1e-15 relative (see
# test_reference_converged). It also returns E|f g|, the scale of the absolute tolerance.
# |c| = 1 (S singular) is the 1-D `split_mean` of u -> f(u) g(ratio u), split at the kink u = 0.
_GL_NODES = 160


def gaussian_reference(
    f: Callable[[np.ndarray], np.ndarray],
    g: Callable[[np.ndarray], np.ndarray],
    s11: float,
    s12: float,
    s22: float,
    nodes: int = _GL_NODES,
) -> tuple[float, float]:
    """(E[f(u) g(v)], E[|f(u) g(v)|]) for (u, v) ~ N(0, S), S positive definite."""
    value, scale = split_pair(f, g, s11, s12, s22, nodes=nodes, return_abs=True)
    return float(value), float(scale)


@functools.cache
def closed_form(label: str) -> sympy.Expr:
    f, g = _CASES[label]
    value = pair_expectation(f, g, U, V)
    assert value is not None, label
    return value


_CASES = {label: (f, g) for label, f, g in TABLE_CASES}


@functools.cache
def compiled(expr: sympy.Expr) -> Callable[..., jax.Array]:
    return lambdify_jax(expr, SIGMA)


def evaluate(expr: sympy.Expr, s11: float, s12: float, s22: float) -> float:
    return float(compiled(expr)(s11, s12, s22))


def module_prefixes(source: str) -> set[str]:
    """First components of the dotted names in generated source (`jax` for `jax.nn.relu`)."""
    return set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)(?:\.[A-Za-z_]\w*)+", source))


def has_step(expr: sympy.Expr) -> bool:
    return bool(sympy.sympify(expr).has(Step))


# ------------------------------------------------------------------------------------------------
# The table against quadrature.
# ------------------------------------------------------------------------------------------------


def test_reference_converged() -> None:
    # The reference itself: more nodes change nothing at the 1e-13 level, and it reproduces
    # textbook values computed without any tpcompile code: E[u^2 v^2] = S11 S22 + 2 S12^2 and the
    # orthant probability P(u > 0, v > 0) = 1/4 + arcsin(c)/(2 pi).
    s11, s12, s22 = 1.2, 0.95 * math.sqrt(1.2 * 0.8), 0.8
    step = numpy_fn(Step(U), U)
    relu = numpy_fn(Relu(U), U)
    for nodes in (160, 240):
        value, _ = gaussian_reference(step, step, s11, s12, s22, nodes)
        c = s12 / math.sqrt(s11 * s22)
        assert value == pytest.approx(0.25 + math.asin(c) / (2 * math.pi), rel=1e-13)
    a, _ = gaussian_reference(relu, relu, s11, s12, s22, 160)
    b, _ = gaussian_reference(relu, relu, s11, s12, s22, 240)
    assert a == pytest.approx(b, rel=1e-13)
    square = numpy_fn(U**2, U)
    value, _ = gaussian_reference(square, square, s11, s12, s22)
    assert value == pytest.approx(s11 * s22 + 2 * s12**2, rel=1e-13)


def test_reference_agrees_with_scipy_dblquad() -> None:
    # One independent cross-check of the reference with scipy's adaptive quadrature over the
    # bivariate density: relu x relu at a negative correlation.
    s11, s12, s22 = 0.7, -0.6 * math.sqrt(0.7 * 1.9), 1.9
    # relu(u) relu(v) is nonzero only on the quadrant u > 0, v > 0.
    value = density_dblquad(
        lambda u: u, lambda v: v, s11, s12, s22, 0, 15, epsabs=1e-13, epsrel=1e-12
    )
    relu = numpy_fn(Relu(U), U)
    reference, _ = gaussian_reference(relu, relu, s11, s12, s22)
    assert reference == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize("label", CASE_IDS)
def test_table_matches_quadrature(label: str) -> None:
    f, g = _CASES[label]
    fn, gn = numpy_fn(f, U), numpy_fn(g, V)
    for s11, s12, s22 in COVARIANCES:
        expected, scale = gaussian_reference(fn, gn, s11, s12, s22)
        got = evaluate(closed_form(label), s11, s12, s22)
        # The reference is accurate to ~1e-14 relative for every entry, kinked ones included
        # (kinks are split exactly, test_reference_converged), and the closed forms are float64
        # evaluations of exact formulas; the worst disagreement measured over the table is
        # 1.5e-13. rtol 1e-11 keeps a 60x margin and still catches any wrong constant or term.
        # Exact zeros (parity) get an absolute tolerance relative to E|f g|.
        assert got == pytest.approx(expected, rel=1e-11, abs=1e-13 * max(scale, 1.0)), (
            s11,
            s12,
            s22,
        )


@pytest.mark.parametrize("label", CASE_IDS)
def test_table_on_the_diagonal(label: str) -> None:
    # |c| = 1 with positive variances (identical inputs up to scale): the closed form, evaluated
    # through the guards, must equal the 1-D expectation E[f(u) g(+-sqrt(S22/S11) u)].
    f, g = _CASES[label]
    expr = closed_form(label)
    for s11, s22, sign in ((1.0, 1.0, 1.0), (0.8, 1.7, 1.0), (1.3, 0.6, -1.0)):
        s12 = sign * math.sqrt(s11 * s22)
        ratio = sign * math.sqrt(s22 / s11)
        fn, gn = numpy_fn(f, U), numpy_fn(g, V)
        expected = float(split_mean(lambda u, fn=fn, gn=gn, r=ratio: fn(u) * gn(r * u), s11))
        got = evaluate(expr, s11, s12, s22)
        # Same quadrature accuracy as above (~1e-14; measured worst 3e-13). But float64
        # rounding of S12 = +-sqrt(S11 S22) can leave det(S) a few ulps above zero, which moves
        # the angle by up to ~sqrt(1e-16) = 1e-8 and enters kinked results (e.g. step x step,
        # (pi - theta)/(2 pi)) at that level: an intrinsic square-root sensitivity of the
        # expectation at |c| = 1, not a formula error. Hence 1e-7.
        assert got == pytest.approx(expected, rel=1e-7, abs=1e-9), (s11, s12, s22)


@pytest.mark.parametrize("label", [label for label, _, g in TABLE_CASES if g == 1])
def test_means_depend_on_s11_only(label: str) -> None:
    f, _ = _CASES[label]
    value = mean_expectation(f, U)
    assert value is not None
    assert value.free_symbols <= {S11}
    assert sympy.simplify(value - closed_form(label)) == 0


# ------------------------------------------------------------------------------------------------
# Price's theorem and numerical safety.
# ------------------------------------------------------------------------------------------------


def _price_cases() -> list[str]:
    labels = []
    for label, f, g in TABLE_CASES:
        if g == 1 or has_step(f) or has_step(g):
            # Means have no S12; Step is discontinuous, so Price's theorem needs a Dirac delta
            # where the autodiff convention has 0.
            continue
        if pair_expectation(sympy.diff(f, U), sympy.diff(g, V), U, V) is not None:
            labels.append(label)
    return labels


@pytest.mark.parametrize("label", _price_cases())
def test_price_theorem(label: str) -> None:
    # d/dS12 E[f(u) g(v)] = E[f'(u) g'(v)]: jax.grad of the printed closed form against the
    # closed form of the derivatives. Both sides are float64 evaluations of exact formulas, so
    # they agree to rounding; 1e-10 allows for cancellation in the longer expressions.
    f, g = _CASES[label]
    derivative = pair_expectation(sympy.diff(f, U), sympy.diff(g, V), U, V)
    assert derivative is not None
    grad = jax.grad(compiled(closed_form(label)), argnums=1)
    for s11, s12, s22 in COVARIANCES:
        expected = evaluate(derivative, s11, s12, s22)
        assert float(grad(s11, s12, s22)) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("label", CASE_IDS)
def test_finite_on_degenerate_covariances(label: str) -> None:
    fn = compiled(closed_form(label))
    for point in DEGENERATE:
        assert np.isfinite(float(fn(*point))), point
    grad = jax.grad(fn, argnums=1)
    for point in COVARIANCES:
        assert np.isfinite(float(grad(*point))), point


@pytest.mark.parametrize("label", CASE_IDS)
def test_closed_forms_use_only_guarded_functions(label: str) -> None:
    expr = closed_form(label)
    forbidden = (sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.acos, sympy.asin)
    assert not expr.has(*forbidden)
    assert expr.free_symbols <= set(SIGMA)
    source = to_jax(expr)
    assert module_prefixes(source) <= {"jnp", "jax", "rt"}  # rt: the runtime's guards


def test_unsupported_pairs_return_none() -> None:
    assert pair_expectation(sympy.tanh(U), sympy.tanh(V), U, V) is None
    assert pair_expectation(Relu(U), sympy.erf(V), U, V) is None
    assert pair_expectation(Sigmoid(U), V, U, V) is None
    assert pair_expectation(Relu(U + 1), Relu(V), U, V) is None  # nonzero mean
    assert mean_expectation(sympy.tanh(U), U) is None
    assert pair_expectation(Relu(U), Relu(U), U, V) is None  # g must be a function of v only


def test_linear_combinations_and_known_values() -> None:
    # abs = 2 relu - x against THEORY §5's closed form (2/pi) q (sqrt(1 - c^2) + c arcsin c).
    s11, s12, s22 = 1.3, -0.4, 0.9
    expr = pair_expectation(2 * Relu(U) - U, 2 * Relu(V) - V, U, V)
    q = math.sqrt(s11 * s22)
    c = s12 / q
    assert expr is not None
    expected = 2 / math.pi * q * (math.sqrt(1 - c * c) + c * math.asin(c))
    assert evaluate(expr, s11, s12, s22) == pytest.approx(expected, rel=1e-13)
    # Opposite half-lines never overlap: relu(u) relu(-u) = 0 (Step(0) = 0).
    assert pair_expectation(Relu(U) * Relu(-U), V, U, V) == 0
    # Coefficients free of the variables pass through.
    a = sympy.Symbol("a")
    scaled = pair_expectation(a * Relu(U), Relu(V), U, V)
    assert scaled is not None
    assert sympy.simplify(scaled - a * closed_form("relu*relu")) == 0


# ------------------------------------------------------------------------------------------------
# functions: primitives, derivatives, printing.
# ------------------------------------------------------------------------------------------------

X, Y = sympy.symbols("x y", real=True)

# Primitive applied to x, its numpy reference, and where it is smooth.
PRIMITIVE_CASES = [
    pytest.param(Relu(X), lambda x: np.maximum(x, 0.0), id="Relu"),
    pytest.param(Step(X), lambda x: np.where(x > 0, 1.0, 0.0), id="Step"),
    pytest.param(ReluPow(X, 2), lambda x: np.maximum(x, 0.0) ** 2, id="ReluPow2"),
    pytest.param(ReluPow(X, 3), lambda x: np.maximum(x, 0.0) ** 3, id="ReluPow3"),
    pytest.param(Gelu(X), lambda x: x * special.ndtr(x), id="Gelu"),
    pytest.param(
        GeluPrime(X),
        lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi),
        id="GeluPrime",
    ),
    pytest.param(Sigmoid(X), lambda x: 1 / (1 + np.exp(-x)), id="Sigmoid"),
    pytest.param(Softplus(X), lambda x: np.log1p(np.exp(x)), id="Softplus"),
    pytest.param(SafeSqrt(X), lambda x: np.sqrt(np.maximum(x, 0.0)), id="SafeSqrt"),
    pytest.param(
        SafeDiv(X, 2 + X),
        lambda x: np.divide(x, 2 + x, out=np.zeros_like(x), where=(2 + x) != 0),
        id="SafeDiv",
    ),
]
# Away from every kink (0) and from SafeDiv's pole (-2).
SMOOTH_POINTS = np.array([-1.7, -0.6, 0.35, 1.1, 2.4])


@pytest.mark.parametrize(("expr", "reference"), PRIMITIVE_CASES)
def test_primitive_prints_to_the_right_numbers(
    expr: sympy.Expr, reference: Callable[[np.ndarray], np.ndarray]
) -> None:
    points = np.linspace(-3.0, 3.0, 61)  # includes 0
    got = np.asarray(lambdify_jax(expr, [X])(jnp.asarray(points)))
    # Both sides are double-precision library calls: agreement to a few ulps.
    np.testing.assert_allclose(got, reference(points), rtol=1e-13, atol=1e-15)
    source = to_jax(expr)
    assert module_prefixes(source) <= {"jnp", "jax", "rt"}  # rt: the runtime's guards


@pytest.mark.parametrize(("expr", "reference"), PRIMITIVE_CASES)
def test_primitive_derivative_matches_finite_difference(
    expr: sympy.Expr, reference: Callable[[np.ndarray], np.ndarray]
) -> None:
    derivative = sympy.diff(expr, X)
    assert not derivative.has(sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.DiracDelta)
    fn = lambdify_jax(expr, [X])
    dfn = lambdify_jax(derivative, [X])
    points = SMOOTH_POINTS[SMOOTH_POINTS > 0] if expr.has(SafeSqrt) else SMOOTH_POINTS
    h = 1e-5
    for x in points:
        central = (float(fn(x + h)) - float(fn(x - h))) / (2 * h)
        # Central differences: truncation h^2 f'''/6 ~ 1e-10 plus rounding eps/h ~ 1e-11.
        assert float(dfn(x)) == pytest.approx(central, rel=1e-7, abs=1e-9), x
        # And the printed function's own autodiff agrees with the symbolic derivative.
        assert float(jax.grad(fn)(x)) == pytest.approx(float(dfn(x)), rel=1e-12, abs=1e-14)


def test_primitive_conventions() -> None:
    assert ReluPow(X, 1) == Relu(X)
    assert Relu(2) == 2 and Relu(-3) == 0
    assert Step(0) == 0 and Step(-1) == 0 and Step(sympy.Rational(1, 2)) == 1
    assert ReluPow(2, 3) == 8 and ReluPow(-2, 3) == 0
    assert sympy.diff(Step(X), X) == 0
    assert sympy.diff(Relu(X), X) == Step(X)
    assert sympy.diff(ReluPow(X, 3), X) == 3 * ReluPow(X, 2)
    assert sympy.diff(ReluPow(X, 2), X) == 2 * Relu(X)
    assert sympy.diff(Gelu(X), X) == GeluPrime(X)
    assert sympy.diff(Softplus(X), X) == Sigmoid(X)
    assert sympy.simplify(sympy.diff(Sigmoid(X), X) - Sigmoid(X) * (1 - Sigmoid(X))) == 0
    expected = (2 - X**2) * sympy.exp(-(X**2) / 2) / sympy.sqrt(2 * sympy.pi)
    assert sympy.simplify(sympy.diff(GeluPrime(X), X) - expected) == 0
    with pytest.raises(ValueError):
        ReluPow(X, sympy.Rational(1, 2))
    # Autodiff conventions of the printed code: gradient 0 at the kink for relu and step.
    assert float(jax.grad(lambdify_jax(Relu(X), [X]))(0.0)) == 0.0
    assert float(jax.grad(lambdify_jax(Step(X), [X]))(0.3)) == 0.0


def test_printer_output_format() -> None:
    assert to_jax(Relu(X)) == "jax.nn.relu(x)"
    assert to_jax(Step(X)) == "jnp.where(x > 0, 1.0, 0.0)"
    assert to_jax(SafeSqrt(X)) == "rt.safe_sqrt(x)"
    assert to_jax(SafeSqrt(X + 1)) == "rt.safe_sqrt(x + 1)"
    assert to_jax(Gelu(X - 1)) == "((x - 1)*jax.scipy.stats.norm.cdf(x - 1))"
    assert to_jax(sympy.erf(X)) == "jax.scipy.special.erf(x)"
    assert to_jax(Sigmoid(X)) == "jax.nn.sigmoid(x)"
    assert to_jax(Softplus(X)) == "jax.nn.softplus(x)"
    assert to_jax(sympy.atan2(X, Y)) == "rt.atan2(x, y)"  # vectorised, not libm
    assert "jax.scipy.stats.norm.cdf" in to_jax(Gelu(X))
    # Rationals as float literals at full precision, no integer division.
    assert to_jax(X / 3) == "0.3333333333333333*x"
    assert to_jax(sympy.Rational(1, 3)) == "0.3333333333333333"
    assert to_jax(sympy.Float("0.1") * X) == "0.1*x"
    # Constants are evaluated exactly, then rounded once (math.sqrt(2*math.pi) is 1 ulp off).
    exact = float(sympy.N(sympy.sqrt(2 * sympy.pi), 40))
    assert to_jax(sympy.sqrt(2 * sympy.pi) * X) == f"{exact!r}*x"
    assert to_jax(X + Y, {X: "a", Y: "b"}) == "a + b"
    # Powers of composite printings keep their grouping: (relu^2)^3, (x Phi(x))^2.
    fn = lambdify_jax(ReluPow(X, 2) ** 3 + Gelu(X) ** 2, [X])
    x = 0.7
    assert float(fn(x)) == pytest.approx(x**6 + (x * special.ndtr(x)) ** 2, rel=1e-14)


def test_lambdify_jax_shapes_and_errors() -> None:
    const = lambdify_jax(sympy.Integer(2), [X, Y])
    out = const(jnp.ones(3), jnp.ones((2, 1)))
    assert out.shape == (2, 3) and out.dtype == jnp.float64
    with pytest.raises(ValueError):
        lambdify_jax(X + Y, [X])
    fn = jax.jit(lambdify_jax(sympy.exp(-(X**2)) * Relu(Y), [X, Y]))
    assert float(fn(1.0, 2.0)) == pytest.approx(2 * math.exp(-1), rel=1e-14)


# ------------------------------------------------------------------------------------------------
# rules.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", rule_names())
def test_rule_builds_prints_and_evaluates(name: str) -> None:
    rule = RULES[name]
    assert rule.name == name and rule.doc and "\n" not in rule.doc
    grid = np.linspace(-4.0, 4.0, 81) if rule.vector else np.linspace(0.0, 4.0, 41)
    for numbers in rule.examples:
        assert len(numbers) == len(rule.numbers)
        assert rule.check(*numbers) is None
        expr = rule.build(X, *(sympy.sympify(n) for n in numbers))
        assert expr.free_symbols == {X}
        assert not expr.has(sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max)
        source = to_jax(expr)
        assert module_prefixes(source) <= {"jnp", "jax"}
        values = np.asarray(lambdify_jax(expr, [X])(jnp.asarray(grid)))
        assert values.shape == grid.shape and np.all(np.isfinite(values))
        # The build agrees with the numpy reference of the same expression.
        np.testing.assert_allclose(values, numpy_fn(expr, X)(grid), rtol=1e-12, atol=1e-14)
        derivative = sympy.diff(expr, X)
        assert not derivative.has(sympy.DiracDelta, sympy.Heaviside)


def test_rule_values_and_checks() -> None:
    grid = np.linspace(-3.0, 3.0, 13)

    def values(name: str, *numbers: float) -> np.ndarray:
        expr = RULES[name].build(X, *(sympy.sympify(n) for n in numbers))
        return np.asarray(lambdify_jax(expr, [X])(jnp.asarray(grid)))

    np.testing.assert_allclose(values("abs"), np.abs(grid), atol=1e-15)
    np.testing.assert_allclose(values("leaky_relu", 0.1), np.maximum(grid, 0.1 * grid))
    np.testing.assert_allclose(values("relu_pow", 3), np.maximum(grid, 0) ** 3)
    np.testing.assert_allclose(values("sign")[grid != 0], np.sign(grid[grid != 0]))
    np.testing.assert_allclose(values("silu"), grid * special.expit(grid), rtol=1e-14)
    np.testing.assert_allclose(values("gelu"), grid * special.ndtr(grid), rtol=1e-14, atol=1e-16)
    relu_pow = RULES["relu_pow"]
    for bad in (0, -1, 2.5, sympy.Rational(3, 2)):
        message = relu_pow.check(bad)
        assert message is not None and "relu_pow" in message
    assert relu_pow.check(2.0) is None
    assert relu_pow.build(X, sympy.Float(2.0)) == ReluPow(X, 2)
    assert RULES["sqrt"].vector is False
    assert rule_names() == sorted(RULES)
    required = {
        "relu",
        "step",
        "sign",
        "abs",
        "leaky_relu",
        "relu_pow",
        "erf",
        "tanh",
        "sigmoid",
        "softplus",
        "gelu",
        "silu",
        "sin",
        "cos",
        "exp",
        "sqrt",
    }
    assert required <= set(RULES)


def test_safe_sqrt_has_a_finite_gradient_at_zero() -> None:
    # Kernels stay differentiable in their inputs on the diagonal (correlation ±1): the guarded
    # square root's gradient at 0 is 0, not inf or NaN.
    x = sympy.Symbol("x", real=True)
    f = lambdify_jax(SafeSqrt(x), [x])
    assert float(jax.grad(lambda t: f(t))(0.0)) == 0.0
    assert float(jax.grad(lambda t: f(t))(4.0)) == 0.25
