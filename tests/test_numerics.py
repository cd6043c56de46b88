"""Numerical expectations (issue 5): kernels of programs without closed forms against independent
high-precision references, the method choice, the options of `compile` and the error report.

Acceptance criteria, each a test below:
* depth-3 MLPs of tanh, sigmoid, softplus and silu, two variance settings (the second with bias
  mean 0.3, so every expectation has nonzero means), N = 20 inputs with themselves and against 5
  more: NNGP and NTK within rtol 1e-9 of the same recursion evaluated in NumPy with a 2-D
  trapezoid rule (h = 0.05 on [-13, 13]^2). The trapezoid rule converges geometrically for
  integrands analytic in a strip (THEORY §6.1); `test_trapezoid_reference_is_adaptive_scipy`
  checks it against scipy's adaptive `quad_vec` at 1e-13, and the slow test recomputes a whole
  recursion adaptively (the rules are in tests/quadrature_reference.py);
* a kinked composition relu(tanh(h) - 1/5) (kink at atanh(1/5), away from the mean): rtol 1e-7
  against a NumPy composite Gauss-Legendre rule split at the kink, itself checked against scipy's
  adaptive quadrature with the kink as a breakpoint;
* Monte Carlo (step(g) * step(z), four Gaussians with a mean): every entry within 4 reported
  standard errors of the orthant probability from scipy's multivariate normal CDF;
* examples/rnn.tp and examples/gated.tp: within the requested tolerance of a high-degree split
  rule, and every numerical quantity within its reported bound.
Error convention (as in test_reference_kernels): |got - want| <= rtol (|want| + max |want|).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sympy
from quadrature_reference import adaptive_pair, split_pair, trapezoid_pair
from scipy import special

import tpcompile
import tpcompile.codegen.show
from tpcompile.kernels.plan import NumericOptions, describe
from tpcompile.prims.functions import Relu, Sigmoid, Step

ROOT = Path(__file__).resolve().parent.parent
Fn = Callable[[np.ndarray], np.ndarray]


def silu_d(x: np.ndarray) -> np.ndarray:
    s = special.expit(x)
    return s * (1 + x * (1 - s))


ACTIVATIONS: dict[str, tuple[Fn, Fn]] = {  # phi and phi'
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (special.expit, lambda x: special.expit(x) * (1 - special.expit(x))),
    "softplus": (lambda x: np.logaddexp(0, x), special.expit),
    "silu": (lambda x: x * special.expit(x), silu_d),
}
SETTINGS = {"sw2=1.5 sb2=0.1": (1.5, 0.1, 0.0), "sw2=3 sb2=0.5 mean=0.3": (3.0, 0.5, 0.3)}


def mlp_source(act: str, sw2: float, sb2: float, mu: float, depth: int = 3) -> str:
    return textwrap.dedent(f"""
        param L = {depth}
        input x
        weight U ~ N(0, {sw2})
        weight W[2..L] ~ N(0, {sw2})
        bias b[1..L] ~ N({mu}, {sb2})
        h[1] = U @ x + b[1]
        for l in 2..L {{
            h[l] = W[l] @ {act}(h[l-1]) + b[l]
        }}
        output {act}(h[L])
    """)


def inputs(seed: int, n: int, d: int = 4) -> np.ndarray:
    """Gaussian rows with norms spread over [0.5, 2] x typical: first-layer variances up to ~12."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, (n, 1))


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float, what: str = "") -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.abs(got - want) / (np.abs(want) + np.max(np.abs(want)))
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert np.all(err <= rtol), f"{what}: error {err[worst]:.2e} at {worst} > {rtol:.0e}"


# --------------------------------------------------------------------------------------------------
# References: E[f(u) g(v)], (u, v) ~ N((m, m), [[s11, s12], [s12, s22]]), one per array entry, by
# the rules of tests/quadrature_reference.py: `trapezoid_pair` (smooth), `split_pair` (kinked,
# 26 panels of 16 Gauss-Legendre nodes on [-13, 13] plus a breakpoint at the kink), checked
# against the adaptive `adaptive_pair`.


def split_pairs(
    f: Fn,
    g: Fn,
    kink: float,
    s11: np.ndarray,
    s12: np.ndarray,
    s22: np.ndarray,
    m1: float,
    m2: float,
) -> np.ndarray:
    return split_pair(
        f, g, s11, s12, s22, m1, m2, kink_f=kink, kink_g=kink, panels=26, nodes=16, zmax=13.0
    )


def mlp_reference(
    x: np.ndarray,
    f: Fn,
    df: Fn,
    sw2: float,
    sb2: float,
    mu: float,
    expect: Callable[..., np.ndarray],
    depth: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """NNGP and NTK of `mlp_source` for all pairs of rows of x (readout N(0, 1)):
    Sigma^1 = sw2 <x, x'>/d + sb2 = Theta^1; with (u, v) ~ N((mu, mu), Sigma^{l-1}),
    Sigma^l = sw2 E[phi(u) phi(v)] + sb2, Theta^l = Sigma^l + sw2 E[phi'(u) phi'(v)] Theta^{l-1};
    NNGP = E[phi phi'] at Sigma^L, NTK = NNGP + E[phi' phi'] Theta^L."""
    i, j = np.triu_indices(len(x))

    def pairs(fn: Fn, sig: np.ndarray) -> np.ndarray:
        d = np.diag(sig)
        out = np.zeros_like(sig)
        out[i, j] = expect(fn, fn, d[i], sig[i, j], d[j], mu, mu)
        out[j, i] = out[i, j]
        return out

    sig = sw2 * x @ x.T / x.shape[1] + sb2
    theta = sig
    for _ in range(2, depth + 1):
        nxt = sw2 * pairs(f, sig) + sb2
        theta = nxt + sw2 * pairs(df, sig) * theta
        sig = nxt
    nngp = pairs(f, sig)
    return nngp, nngp + pairs(df, sig) * theta


# --------------------------------------------------------------------------------------------------
# Acceptance: smooth MLPs


def test_trapezoid_reference_is_adaptive_scipy() -> None:
    """The reference rule at the hardest variances of the MLP tests (first layer of the second
    setting: variances up to ~12, mean 0.3), correlations from -0.9 to exactly 1."""
    s11 = np.array([12.0, 0.8, 6.0, 3.0])
    s22 = np.array([12.0, 3.0, 9.0, 3.0])
    c = np.array([1.0, -0.9, 0.3, 0.999])
    s12 = c * np.sqrt(s11 * s22)
    for f in (ACTIVATIONS["tanh"][1], ACTIVATIONS["silu"][0]):
        want = adaptive_pair(f, f, s11, s12, s22, 0.3, 0.3)
        np.testing.assert_allclose(
            trapezoid_pair(f, f, s11, s12, s22, 0.3, 0.3), want, rtol=1e-13, atol=1e-14
        )


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_smooth_mlp_kernels_match_reference_to_1e9(act: str, setting: str) -> None:
    sw2, sb2, mu = SETTINGS[setting]
    x1, x2 = inputs(1, 20), inputs(2, 5)
    nngp, ntk = mlp_reference(
        np.concatenate([x1, x2]), *ACTIVATIONS[act], sw2, sb2, mu, trapezoid_pair
    )
    compiled = tpcompile.compile(mlp_source(act, sw2, sb2, mu))
    same = compiled.kernel_fn(x1)
    cross, report = compiled.kernel_fn(x1, x2, return_errors=True)
    for got, want, what in (
        (same.nngp, nngp[:20, :20], "nngp"),
        (same.ntk, ntk[:20, :20], "ntk"),
        (cross.nngp, nngp[:20, 20:], "cross nngp"),
        (cross.ntk, ntk[:20, 20:], "cross ntk"),
    ):
        assert_close(got, want, 1e-9, f"{act} {setting} {what}")
    # Every numerical quantity is a Mehler series (smooth one-variable functions) or a mean, with
    # a bound near tol = 1e-10 (relative to sqrt(E f^2 E g^2); the report divides by max |value|).
    assert report.entries and {e.quantity.method for e in report} <= {"mehler", "panel"}
    assert report.max_relative() <= 1e-9 and all(
        e.terms for e in report if e.quantity.method == "mehler"
    )


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_tanh_mlp_matches_adaptive_scipy_recursion(setting: str) -> None:
    """The whole recursion with nested adaptive quadrature (minutes)."""
    sw2, sb2, mu = SETTINGS[setting]
    x = inputs(1, 20)
    nngp, ntk = mlp_reference(x, *ACTIVATIONS["tanh"], sw2, sb2, mu, adaptive_pair)
    k = tpcompile.compile(mlp_source("tanh", sw2, sb2, mu)).kernel_fn(x)
    assert_close(k.nngp, nngp, 1e-9, "nngp")
    assert_close(k.ntk, ntk, 1e-9, "ntk")


# --------------------------------------------------------------------------------------------------
# Acceptance: a kinked composition

KINK = float(np.arctanh(0.2))


def kinked(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.tanh(x) - 0.2, 0)


def kinked_d(x: np.ndarray) -> np.ndarray:
    return np.where(np.tanh(x) > 0.2, 1 - np.tanh(x) ** 2, 0.0)


def test_split_reference_is_adaptive_scipy() -> None:
    s11, s12, s22, m = 2.0, 1.1, 1.5, 0.3
    for f in (kinked, kinked_d):
        # nested adaptive Gauss-Kronrod with the kink as a breakpoint of both integrals
        want = adaptive_pair(f, f, s11, s12, s22, m, m, kink_f=KINK, kink_g=KINK, epsrel=1e-13)
        got = split_pairs(f, f, KINK, *(np.array([v]) for v in (s11, s12, s22)), m, m)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_kinked_composition_matches_reference_to_1e7() -> None:
    sw2, sb2, mu = 2.0, 0.2, 0.3
    src = mlp_source("relu_tanh", sw2, sb2, mu).replace(
        "input x", "def relu_tanh(e) = relu(tanh(e) - 0.2)\ninput x"
    )
    x1, x2 = inputs(3, 20), inputs(4, 5)

    def expect(
        f: Fn, g: Fn, s11: np.ndarray, s12: np.ndarray, s22: np.ndarray, m1: float, m2: float
    ) -> np.ndarray:
        return split_pairs(f, g, KINK, s11, s12, s22, m1, m2)

    nngp, ntk = mlp_reference(np.concatenate([x1, x2]), kinked, kinked_d, sw2, sb2, mu, expect)
    compiled = tpcompile.compile(src)
    methods = {q.method for q in compiled.numerics}
    assert "split" in methods
    assert f"{KINK:.6g}" in compiled.source or repr(KINK)[:10] in compiled.source
    same = compiled.kernel_fn(x1)
    cross, report = compiled.kernel_fn(x1, x2, return_errors=True)
    assert_close(same.nngp, nngp[:20, :20], 1e-7, "nngp")
    assert_close(same.ntk, ntk[:20, :20], 1e-7, "ntk")
    assert_close(cross.nngp, nngp[:20, 20:], 1e-7, "cross nngp")
    assert_close(cross.ntk, ntk[:20, 20:], 1e-7, "cross ntk")
    assert report.max_relative() < 1e-7


# --------------------------------------------------------------------------------------------------
# Acceptance: Monte Carlo

MC_SRC = """
input x
weight U ~ N(0, 1)
weight V ~ N(0, 1)
weight A ~ N(0, 1)
bias b ~ N(0.3, 0.2)
g = U @ x
z = g + V @ x + b
y = z - A @ x
output exp(g / 2) * cos(z) * sin(y)
"""


def mc_reference(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """E[f(a) f(b)], f = exp(g/2) cos(z) sin(y), exactly: (g, z, y) = P s for the sources
    s = (Ux, Vx, Ax, b), so Cov((g,z,y)_a, (g,z,y)_b) = P diag(G_ab, G_ab, G_ab, 0.2) P^T; writing
    cos and sin as exponentials, f(a) f(b) is a sum of 16 terms c exp(t.X), and for complex t,
    E exp(t.X) = exp(t.mu + t^T Sigma t / 2)."""
    p = np.array([[1, 0, 0, 0], [1, 1, 0, 1], [1, 1, -1, 1]], float)
    mu = np.array([0, 0.3, 0.3, 0, 0.3, 0.3])

    def cov(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        gram = u @ v / len(u)
        return p @ np.diag([gram, gram, gram, 0.2]) @ p.T

    out = np.zeros((len(xa), len(xb)))
    for i, u in enumerate(xa):
        for j, v in enumerate(xb):
            sigma = np.block([[cov(u, u), cov(u, v)], [cov(v, u), cov(v, v)]])
            total = 0j
            for s1, s2, s3, s4 in np.ndindex(2, 2, 2, 2):
                signs = 1 - 2 * np.array([s1, s2, s3, s4])
                t = np.array([0.5, 1j * signs[0], 1j * signs[1], 0.5, 1j * signs[2], 1j * signs[3]])
                coef = (signs[1] / (4j)) * (signs[3] / (4j))
                total += coef * np.exp(t @ mu + t @ sigma @ t / 2)
            out[i, j] = total.real
    return out


def test_monte_carlo_contains_reference_within_four_standard_errors() -> None:
    """A function of three Gaussians per input (a 6-D expectation per pair): Monte Carlo."""
    x1, x2 = inputs(5, 4, 3) / 2, inputs(6, 3, 3) / 2
    compiled = tpcompile.compile(MC_SRC, samples=1 << 15, seed=3)
    assert {q.method for q in compiled.numerics} == {"mc"}
    assert all(q.error_kind == "standard error" for q in compiled.numerics)
    for b in (x2, None):
        k, report = compiled.kernel_fn(x1, b, get="nngp", return_errors=True)
        entry = report["E[exp(%4)*sin(y)*cos(z) · exp(%4)*sin(y)*cos(z)']"]  # %4 = g/2: the NNGP
        se = entry.entries  # per-entry standard errors of the last (cross) evaluation
        want = mc_reference(x1, x1 if b is None else b)
        assert se.shape == k.shape and np.all(se > 0) and np.all(se < 0.05 * np.max(want))
        if b is None:  # kernel_fn symmetrises: the average of two estimates of each entry
            se = np.maximum(se, se.T)
        assert np.all(np.abs(np.asarray(k) - want) <= 4 * se), np.abs(k - want) / se


# --------------------------------------------------------------------------------------------------
# Acceptance: the examples


@pytest.mark.parametrize("name", ["rnn", "gated"])
def test_examples_within_requested_tolerance_and_reported_bounds(name: str) -> None:
    src = (ROOT / "examples" / f"{name}.tp").read_text()
    shape = (5, 3) if name == "rnn" else (3,)
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((6, *shape)), rng.standard_normal((4, *shape))
    tol = 1e-9
    compiled = tpcompile.compile(src, tol=tol)
    reference = tpcompile.compile(src, method="split", degree=128)
    for b in (None, x2):
        got, report = compiled.kernel_fn(x1, b, return_errors=True)
        want, ref_report = reference.kernel_fn(x1, b, return_errors=True)
        # bounds are <= tol relative to sqrt(E f^2 E g^2), which can exceed max |value|
        assert report.entries and report.max_relative() <= 4 * tol
        assert ref_report.max_relative() <= 1e-12  # the reference rule has converged
        for kind in ("nngp", "ntk"):
            assert_close(getattr(got, kind), getattr(want, kind), tol, f"{name} {kind}")


# --------------------------------------------------------------------------------------------------
# The method choice, the options and the report


def test_describe_finds_kinks_from_the_rule_table() -> None:
    u = sympy.Symbol("u0", real=True)
    cases = {
        sympy.tanh(u): ("smooth", ()),
        u**3 - u: ("polynomial", ()),
        Relu(u - 1): ("kinked", (1.0,)),
        sympy.Abs(u + 0.5): ("kinked", (-0.5,)),
        sympy.Max(u, 2): ("kinked", (2.0,)),
        0.1 * u + 0.9 * Relu(u): ("kinked", (0.0,)),  # leaky_relu's decomposition
        Relu(sympy.tanh(u) - sympy.Rational(1, 5)): ("kinked", (KINK,)),
        Step(Sigmoid(u) - sympy.Rational(1, 3)): ("kinked", (-np.log(2),)),  # found numerically
        Relu(Relu(u) - 1): ("kinked", (0.0, 1.0)),
        Relu(sympy.sin(u)): ("irregular", ()),  # infinitely many kinks
    }
    for expr, (kind, kinks) in cases.items():
        info = describe(expr, u)
        assert info.kind == kind, expr
        np.testing.assert_allclose(info.kinks, kinks, atol=1e-12, err_msg=str(expr))


def test_methods_follow_smoothness_and_dimension() -> None:
    src = """
input x
weight U ~ N(0, 1)
weight V ~ N(0, 1)
bias b ~ N(0.5, 0.2)
g = U @ x + b
z = g + V @ x
output tanh(g) + g * sigmoid(z) + relu(tanh(g) - 0.3) * tanh(g)
"""
    methods = {q.label: q.method for q in tpcompile.compile(src).numerics}
    assert methods["E[tanh(g) · tanh(g)']"] == "mehler"
    assert any(m == "tensor" for lbl, m in methods.items() if "sigmoid(z)" in lbl)
    assert any(m == "split" for lbl, m in methods.items() if lbl.count("relu") == 2)
    forced = {q.method for q in tpcompile.compile(src, method="mc").numerics}
    assert forced == {"mc"}


def test_compile_options_are_validated() -> None:
    for kwargs in (
        {"tol": 0.0},
        {"tol": 2.0},
        {"samples": 2},
        {"seed": -1},
        {"method": "gauss"},
        {"degree": 3},
    ):
        with pytest.raises(tpcompile.TPError):  # a user's mistake: a clear error, exit 1
            tpcompile.compile("input x\nweight U ~ N(0, 1)\noutput tanh(U @ x)\n", **kwargs)
    opts = NumericOptions(tol=1e-6)
    assert opts.split_degree() < NumericOptions().split_degree()


def test_report_marks_numerical_quantities_and_show_prints_them() -> None:
    src = (ROOT / "examples" / "gated.tp").read_text()
    compiled = tpcompile.compile(src, tol=1e-8)
    assert [q.method for q in compiled.numerics] == ["mehler", "mehler"]
    assert all(q.error_kind == "bound" for q in compiled.numerics)
    _, report = compiled.kernel_fn(np.eye(3), return_errors=True)
    assert len(report) == 2 and "mehler" in str(report) and report.max_relative() <= 1e-8
    assert report["E[sigmoid(z) · sigmoid(z)']"].terms > 0
    text = tpcompile.codegen.show.derivation(compiled)
    assert text.count("numerical (mehler)") == 2 and "numerical (coefficients)" in text
    assert "tol=1e-08" in compiled.source  # the option reaches the generated code
    exact, empty = tpcompile.compile((ROOT / "examples" / "mlp.tp").read_text()).kernel_fn(
        np.eye(3), return_errors=True
    )
    assert len(empty) == 0 and exact.nngp.shape == (3, 3)


def test_methods_agree_with_each_other() -> None:
    """Mehler, the split rule and Gauss-Hermite at a high degree give the same tanh kernel."""
    src = mlp_source("tanh", 1.5, 0.1, 0.2, depth=2)
    x = inputs(8, 5) / 2  # variances ~1: Gauss-Hermite's degree needs grow with the variance
    auto = tpcompile.compile(src).kernel_fn(x)
    for kwargs in ({"method": "split", "degree": 96}, {"method": "hermite", "degree": 320}):
        k = tpcompile.compile(src, **kwargs).kernel_fn(x)
        assert_close(k.nngp, auto.nngp, 1e-10, str(kwargs))
        assert_close(k.ntk, auto.ntk, 1e-9, str(kwargs))
