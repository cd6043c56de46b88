"""Acceptance tests: tpcompile's infinite-width kernels against independent NumPy references.

The references live in ``numpy_reference.py`` and are written from the math (DESIGN §3, THEORY §3.4,
§5, P2 parameterization). Tests named ``test_numpy_*`` exercise only the references and run without
tpcompile (``pytest tests/test_reference_kernels.py -k numpy``); the slow Monte Carlo self-check of
every reference against a finite network is ``test_numpy_reference_self_check_*`` (``-m slow``).
The other tests compile ``.tp`` programs with ``tpcompile.compile`` and skip while the package does
not exist.

Tolerances (relative, with an absolute floor of the same size times max|K|, because an entry near 0
is a sum of terms of the kernel's scale and carries their rounding error):

* RTOL = 1e-12 for closed-form kernels: tpcompile and the reference evaluate the same recursion in
  float64 with the same closed forms, so they differ by rounding (~1e-16 per operation) times a
  modest amplification per layer (measured: <= 1e-15 for depth <= 4, ~3e-14 at depth 50).
* RTOL_C1 = 1e-7 for NTK entries of two IDENTICAL inputs when the network contains relu. There the
  correlation is c = 1 and relu's NTK factor (pi - arccos c)/(2 pi) has infinite slope: one ulp of
  c (1 - 1.1e-16) moves arccos c by 1.5e-8. If an implementation computes a per-input variance and
  the pair covariance by different floating-point paths, the step factor is off by ~5e-9 per layer
  (measured with the reference: 3e-9 at depth 1, 1.8e-8 at depth 4, 2e-7 at depth 50). That is not a
  bug, so such entries get RTOL_C1 (RTOL_C1_DEEP at depth 50). The exact-value test keeps 1e-12: one
  input with itself should give c == 1 exactly (THEORY §10, trap 7).
* RTOL_NUMERIC = 1e-6 where tpcompile must fall back to numerical integration (relu(g) * erf(g),
  and the erf(g) + relu(g) mixture if it has no mixed closed form): the accuracy DESIGN §3 asks of
  the smoothness-aware quadrature (trapezoid / conditioning for kinks).
"""

from __future__ import annotations

import math
import textwrap

import jax
import numpy as np
import pytest
from scipy import integrate

try:  # tests/ as a package or as a plain directory on sys.path
    from . import numpy_reference as ref
except ImportError:
    import numpy_reference as ref

jax.config.update("jax_enable_x64", True)

RTOL = 1e-12
RTOL_C1 = 1e-7
RTOL_C1_DEEP = 2e-6
RTOL_DEEP = 1e-10
RTOL_NUMERIC = 1e-6


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tp():
    mod = pytest.importorskip("tpcompile")
    if getattr(mod, "__file__", None) is None:  # only the tpcompile/ directory (namespace package)
        pytest.skip("tpcompile is not implemented yet")
    return mod


def src(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


_COMPILED: dict = {}


def compiled_kernels(tp, source, x1, x2=None, params=None) -> ref.Kernels:
    """Kernels of `source` (compiled once per (source, params) and reused)."""
    key = (source, tuple(sorted((params or {}).items())))
    if key not in _COMPILED:
        _COMPILED[key] = tp.compile(source, params=params)
    return kernels_of(_COMPILED[key], x1, x2)


def kernels_of(compiled, x1, x2=None) -> ref.Kernels:
    """compiled.kernel_fn(x1, x2) as NumPy arrays, checking shape, float64 dtype, finiteness."""
    k = compiled.kernel_fn(x1, x2, get=("nngp", "ntk"))
    out = ref.Kernels(np.asarray(k.nngp), np.asarray(k.ntk))
    n2 = len(x1) if x2 is None else len(x2)
    for name, K in zip(("nngp", "ntk"), out, strict=True):
        assert K.shape == (len(x1), n2), f"{name} has shape {K.shape}"
        assert K.dtype == np.float64, f"{name} is {K.dtype}; jax_enable_x64 is on"
        assert np.all(np.isfinite(K)), f"{name} has non-finite entries"
    return out


def identical_pairs(x1, x2=None):
    """Mask of kernel entries whose two inputs are bitwise identical."""
    a = np.asarray(x1).reshape(len(x1), -1)
    b = a if x2 is None else np.asarray(x2).reshape(len(x2), -1)
    return np.all(a[:, None, :] == b[None, :, :], axis=-1)


def assert_kernel_close(got, want, *, rtol=RTOL, same=None, rtol_same=None, what=""):
    """|got - want| <= tol * (|want| + max|want|) entrywise, tol = rtol_same on `same` entries."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite entries"
    tol = np.full(want.shape, rtol)
    if same is not None and rtol_same is not None:
        tol = np.where(same, rtol_same, rtol)
    scale = np.max(np.abs(want))
    err = np.abs(got - want) / (np.abs(want) + scale)
    worst = np.unravel_index(np.argmax(err / tol), err.shape)
    assert np.all(err <= tol), (
        f"{what}: worst entry {worst}: got {got[worst]!r}, want {want[worst]!r}, "
        f"relative error {err[worst]:.3e} > {tol[worst]:.1e}"
    )


def assert_kernels_close(got, want, *, relu, x1, x2=None, rtol=RTOL, rtol_same=RTOL_C1, what=""):
    """NNGP to rtol everywhere; NTK to rtol except identical-input entries of relu networks."""
    same = identical_pairs(x1, x2)
    assert_kernel_close(got.nngp, want.nngp, rtol=rtol, what=f"{what} nngp")
    assert_kernel_close(
        got.ntk, want.ntk, rtol=rtol, same=same, rtol_same=rtol_same if relu else rtol,
        what=f"{what} ntk",
    )


def inputs(seed, n, *shape):
    """Gaussian rows with norms spread over [0.5, 2] x typical."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape))
    return x * rng.uniform(0.5, 2.0, (n,) + (1,) * len(shape))


def assert_psd(K, what=""):
    K = np.asarray(K)
    np.testing.assert_allclose(K, K.T, rtol=0, atol=1e-12 * np.max(np.abs(K)), err_msg=what)
    eig = np.linalg.eigvalsh(0.5 * (K + K.T))
    assert eig[0] >= -1e-10 * eig[-1], f"{what}: min eigenvalue {eig[0]:.3e}, max {eig[-1]:.3e}"


# --------------------------------------------------------------------------------------------------
# .tp programs
# --------------------------------------------------------------------------------------------------

# DESIGN §4 exact value. Every variance 1, no readout bias; write q = |x|^2/d.
#   layer 1: Sigma^1 = q + 1 (U and b1), Theta^1 = Sigma^1 = q + 1.
#   relu at correlation 1: E[relu(u)^2] = Sigma/2, E[step(u)^2] = 1/2.
#   layer 2: Sigma^2 = E[relu(h1)^2] + 1 = (q + 1)/2 + 1,
#            Theta^2 = Sigma^2 + E[step^2] Theta^1 = (q + 1)/2 + 1 + (q + 1)/2 = q + 2.
#   output:  NNGP = E[relu(h2)^2] = Sigma^2/2 = (q + 1)/4 + 1/2,
#            NTK = NNGP + E[step^2] Theta^2 = (q + 1)/4 + 1/2 + (q + 2)/2 = (3/4) q + 7/4.
EXACT_SRC = src(
    """
    input x
    weight U ~ N(0, 1)
    weight W ~ N(0, 1)
    bias b1 ~ N(0, 1)
    bias b2 ~ N(0, 1)
    h1 = U @ x + b1
    h2 = W @ relu(h1) + b2
    output relu(h2)
    """
)


def mlp_source(phi, *, sw2, sb2, sv2, svb2, deep):
    """The MLP of the brief. `deep` (L >= 2 via params) has the W family and the loop; the L = 1
    program has neither. sb2 None: no bias at all; svb2 None: no readout bias."""
    lines = ["param L = 2" if deep else "param L = 1", f"param sw2 = {sw2!r}"]
    if sb2 is not None:
        lines.append(f"param sb2 = {sb2!r}")
    lines += ["input x", "weight U ~ N(0, sw2)"]
    if deep:
        lines.append("weight W[2..L] ~ N(0, sw2)")
    if sb2 is not None:
        lines.append("bias b[1..L] ~ N(0, sb2)")
    if svb2 is None:
        lines.append(f"readout ~ N(0, {sv2!r})")
    else:
        lines.append(f"readout ~ N(0, {sv2!r}) + N(0, {svb2!r})")
    lines.append("h[1] = U @ x" + (" + b[1]" if sb2 is not None else ""))
    if deep:
        rhs = f"W[l] @ {phi}(h[l-1])" + (" + b[l]" if sb2 is not None else "")
        lines += ["for l in 2..L {", f"    h[l] = {rhs}", "}"]
    lines.append(f"output {phi}(h[L])")
    return "\n".join(lines) + "\n"


MLP_SETTINGS = {
    "sw2=2,sb2=.1": dict(sw2=2.0, sb2=0.1, sv2=1.0, svb2=None),
    "sw2=1,sb2=.5,sv2=.5,svb2=.2": dict(sw2=1.0, sb2=0.5, sv2=0.5, svb2=0.2),
    "sw2=3,nobias,sv2=2": dict(sw2=3.0, sb2=None, sv2=2.0, svb2=None),
}


def mlp_reference(x1, x2, phi, L, *, sw2, sb2, sv2, svb2):
    return ref.mlp_kernels(
        x1, x2, L=L, phi=phi, sw2=sw2, sb2=sb2 or 0.0, sv2=sv2, svb2=svb2 or 0.0
    )


def resnet_source(phi, *, su2, sw2, alpha, out_phi):
    out = f"{phi}(h[L])" if out_phi else "h[L]"
    return src(
        f"""
        param L = 2
        param alpha = {alpha!r}
        input x
        weight U ~ N(0, {su2!r})
        weight W[1..L] ~ N(0, {sw2!r})
        h[0] = U @ x
        for l in 1..L {{
            h[l] = h[l-1] + alpha * (W[l] @ {phi}(h[l-1]))
        }}
        output {out}
        """
    )


RESNET_SETTINGS = {
    "relu": dict(su2=1.0, sw2=2.0, alpha=0.7),
    "erf": dict(su2=1.5, sw2=1.0, alpha=0.5),
}

# Elman RNN with THEORY §2.2's numbers: erf, T = 4, d = 3, s_W^2 = 1.5, s_U^2 = 1, s_b^2 = 0.3.
RNN = dict(phi="erf", su2=1.0, sw2=1.5, sb2=0.3, sv2=1.0)
RNN_T, RNN_D = 4, 3
RNN_OUTPUT = {
    "last": "output erf(h[T])",
    "mean": "output mean(erf(h[t]) for t in 1..T)",
}
RNN_TIED_SRC = src(
    """
    param T = 4
    input x[1..T]
    weight U ~ N(0, 1.0)
    weight W ~ N(0, 1.5)
    bias b ~ N(0, 0.3)
    h[1] = U @ x[1] + b
    for t in 2..T {
        h[t] = W @ erf(h[t-1]) + U @ x[t] + b
    }
    """
)
RNN_UNTIED_SRC = src(
    """
    param T = 4
    input x[1..T]
    weight U[1..T] ~ N(0, 1.0)
    weight W[2..T] ~ N(0, 1.5)
    bias b[1..T] ~ N(0, 0.3)
    h[1] = U[1] @ x[1] + b[1]
    for t in 2..T {
        h[t] = W[t] @ erf(h[t-1]) + U[t] @ x[t] + b[t]
    }
    """
)


def rnn_source(tied, readout):
    return (RNN_TIED_SRC if tied else RNN_UNTIED_SRC) + RNN_OUTPUT[readout] + "\n"


# Shared randomness: several uses of the SAME G vector g.
G_HEAD = """
    input x
    weight U ~ N(0, 1.0)
    weight W ~ N(0, 2.0)
    g = W @ relu(U @ x)
"""
G_SRC = src(G_HEAD + "    output g\n")
G_PLUS_G_SRC = src(G_HEAD + "    output g + g\n")
PRODUCT_SRC = src(G_HEAD + "    output relu(g) * erf(g)\n")
SUM_SRC = src(G_HEAD + "    output erf(g) + relu(g)\n")
G_REF = dict(L=2, phi="relu", su2=1.0, sw2=2.0, sb2=0.0)  # mlp_kernels arguments for G_HEAD

BLOCK_SRC = src(
    """
    input x
    weight U ~ N(0, 1.0)
    weight W ~ N(0, 2.0)
    weight V ~ N(0, 1.5)
    bias b ~ N(0, 0.2)
    g = W @ relu(U @ x) + b
    y = V @ relu(g)
    r = y + g
    output relu(r)
    """
)
BLOCK = dict(su2=1.0, sw2=2.0, sb2=0.2, sV2=1.5)


# --------------------------------------------------------------------------------------------------
# 1. pure NumPy checks of the references (no tpcompile)
# --------------------------------------------------------------------------------------------------


def test_numpy_exact_value_two_layer_relu():
    x = inputs(0, 7, 5)
    q = np.sum(x * x, axis=1) / 5
    for fn in (ref.mlp_kernels, ref.mlp_kernels_backward):
        k = fn(x, L=2, phi="relu", sw2=1.0, sb2=1.0, su2=1.0, sv2=1.0)
        np.testing.assert_allclose(np.diag(k.ntk), 0.75 * q + 1.75, rtol=1e-12, atol=0)
        np.testing.assert_allclose(np.diag(k.nngp), (q + 1) / 4 + 0.5, rtol=1e-12, atol=0)


COVS = np.array(
    [  # (s11, s12, s22): generic, negative, near +-1, exactly +-1, zero correlation, zero variance,
        # tiny and large scales
        (1.0, 0.5, 1.5),
        (2.0, -1.2, 1.0),
        (0.3, 0.29, 0.3),
        (1.0, 1.0, 1.0),
        (1.0, -1.0, 1.0),
        (2.0, 0.0, 0.5),
        (1.0, 0.999999, 1.0),
        (1.0, 1.0 - 1e-12, 1.0),
        (1.0, -0.9999, 1.0),
        (4.0, 3.9, 4.0),
        (0.0, 0.0, 1.0),
        (1e-3, 5e-4, 2e-3),
        (10.0, 7.0, 9.0),
    ]
).T

CLOSED_FORMS = {  # map -> the pointwise function whose E[f(u) f(v)] it is
    "relu": (ref.relu_nngp, "relu"),
    "step": (ref.step_map, "step"),
    "erf": (ref.erf_nngp, "erf"),
    "erf'": (ref.erf_deriv_map, "erfd"),
    "id": (ref.identity_nngp, "id"),
    "erf+relu": (ref.erf_plus_relu_nngp, "erf_plus_relu"),
    "erf'+step": (ref.erf_plus_relu_deriv_map, None),
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_numpy_closed_forms_match_quadrature(name):
    fn, pointwise = CLOSED_FORMS[name]
    f = ref.POINTWISE[pointwise][0] if pointwise else ref.POINTWISE["erf_plus_relu"][1]
    closed = fn(*COVS)
    quad = ref.gauss_expectation(f, f, *COVS)
    assert np.all(np.isfinite(closed))
    # measured agreement 1e-13 .. 1e-15, including correlations +-1 and zero variances
    np.testing.assert_allclose(quad, closed, rtol=1e-12, atol=1e-14)


def test_numpy_degenerate_covariances_have_the_right_limits():
    s = np.array([0.3, 1.0, 7.0])
    np.testing.assert_allclose(ref.relu_nngp(s, s, s), s / 2, rtol=1e-15)
    np.testing.assert_array_equal(ref.relu_nngp(s, -s, s), 0.0)
    np.testing.assert_array_equal(ref.step_map(s, s, s), 0.5)
    np.testing.assert_array_equal(ref.step_map(s, -s, s), 0.0)
    np.testing.assert_allclose(
        ref.erf_nngp(s, s, s), (2 / np.pi) * np.arcsin(2 * s / (1 + 2 * s)), rtol=1e-15
    )
    # a correlation a rounding error above 1 is clipped, not NaN
    assert np.all(np.isfinite(ref.step_map(s, s * (1 + 1e-15), s)))
    z = np.zeros(3)
    for name, (V, Vd) in ref.MAPS.items():
        for M in (V, Vd):
            val = M(z, z, s)
            assert np.all(np.isfinite(val)), name
        assert np.all(V(z, z, s) == 0.0), name  # the zero-variance variable is 0


PRICE = ["relu", "erf", "id", "erf_plus_relu", "relu_erf"]


@pytest.mark.parametrize("name", PRICE)
def test_numpy_ntk_factor_is_the_price_derivative(name):
    """Price's theorem: d/ds12 E[phi(u) phi(v)] = E[phi'(u) phi'(v)] (away from |c| = 1)."""
    V, Vd = ref.MAPS[name]
    s11, s12, s22 = COVS[:, [0, 1, 2, 5, 9, 11, 12]]
    h = 1e-5 * np.sqrt(s11 * s22)
    fd = (V(s11, s12 + h, s22) - V(s11, s12 - h, s22)) / (2 * h)
    np.testing.assert_allclose(fd, Vd(s11, s12, s22), rtol=1e-7, atol=1e-9)


def test_numpy_relu_erf_quadrature_against_dblquad_and_monte_carlo():
    covs = [(1.0, 0.5, 1.5), (2.0, -1.2, 1.0), (0.3, 0.25, 0.3), (2.0, 0.0, 0.5)]
    rng = np.random.default_rng(1)
    for fn, V in [(ref.POINTWISE["relu_erf"][0], ref.relu_erf_nngp),
                  (ref.POINTWISE["relu_erf"][1], ref.relu_erf_deriv_map)]:
        for a, b, c in covs:
            det = a * c - b * b

            def integrand(v, u, a=a, b=b, c=c, det=det, fn=fn):
                dens = np.exp(-(c * u * u - 2 * b * u * v + a * v * v) / (2 * det))
                return fn(u) * fn(v) * dens / (2 * np.pi * np.sqrt(det))

            # both functions vanish for negative arguments: integrate over the positive quadrant
            want, _ = integrate.dblquad(integrand, 0, np.inf, 0, np.inf, epsabs=1e-14,
                                        epsrel=1e-13)
            assert V(a, b, c) == pytest.approx(want, rel=1e-12, abs=1e-15)
            # Gaussian (not network) Monte Carlo, 1e6 samples
            u, v = np.linalg.cholesky([[a, b], [b, c]]) @ rng.standard_normal((2, 1_000_000))
            s = fn(u) * fn(v)
            assert abs(s.mean() - V(a, b, c)) < 5 * s.std() / 1000.0


@pytest.mark.parametrize("phi", ["relu", "erf"])
def test_numpy_mlp_forward_and_backward_formulations_agree(phi):
    x1, x2 = inputs(1, 9, 5), inputs(2, 4, 5)
    for L in (1, 2, 3, 4):
        for out in (None, "id", "erf_plus_relu"):
            kw = dict(L=L, phi=phi, sw2=1.7, sb2=0.3, su2=0.8, sv2=0.6, svb2=0.2, out=out)
            for b in (None, x2):
                a, c = ref.mlp_kernels(x1, b, **kw), ref.mlp_kernels_backward(x1, b, **kw)
                assert_kernel_close(a.nngp, c.nngp, rtol=1e-13, what=f"{L} {out} nngp")
                assert_kernel_close(a.ntk, c.ntk, rtol=1e-13, what=f"{L} {out} ntk")


def test_numpy_x2_none_equals_x2_is_x_and_blocks_are_consistent():
    x1, x2 = inputs(3, 6, 5), inputs(4, 3, 5)
    full = ref.mlp_kernels(np.concatenate([x1, x2]), L=3, phi="relu", sw2=2.0, sb2=0.1)
    cross = ref.mlp_kernels(x1, x2, L=3, phi="relu", sw2=2.0, sb2=0.1)
    for K, C in zip(full, cross, strict=True):
        np.testing.assert_allclose(C, K[:6, 6:], rtol=1e-14)


@pytest.mark.parametrize("tied", [True, False])
def test_numpy_rnn_with_zero_later_inputs_is_an_mlp(tied):
    """Last-state RNN fed x[2..T] = 0: h[t] = W erf(h[t-1]) + b, an MLP of depth T (tied W or not,
    the last-state kernels are those of the untied net) with U ~ N(0, su2) on the first layer."""
    x = np.zeros((5, RNN_T, RNN_D))
    x[:, 0] = inputs(5, 5, RNN_D)
    k = ref.rnn_kernels(x, tied=tied, readout="last", **RNN)
    m = ref.mlp_kernels(x[:, 0], L=RNN_T, phi="erf", su2=1.0, sw2=1.5, sb2=0.3)
    assert_kernel_close(k.nngp, m.nngp, rtol=1e-13, what="nngp")
    assert_kernel_close(k.ntk, m.ntk, rtol=1e-13, what="ntk")
    # and a one-step RNN is a one-layer MLP for either readout
    for readout in ("last", "mean"):
        k1 = ref.rnn_kernels(x[:, :1], tied=tied, readout=readout, **RNN)
        m1 = ref.mlp_kernels(x[:, 0], L=1, phi="erf", su2=1.0, sw2=1.5, sb2=0.3)
        assert_kernel_close(k1.ntk, m1.ntk, rtol=1e-13, what="T=1 ntk")


def test_numpy_rnn_tied_vs_untied():
    x1, x2 = inputs(6, 5, RNN_T, RNN_D), inputs(7, 3, RNN_T, RNN_D)
    for b in (None, x2):
        tied = ref.rnn_kernels(x1, b, tied=True, readout="last", **RNN)
        untied = ref.rnn_kernels(x1, b, tied=False, readout="last", **RNN)
        assert_kernel_close(tied.nngp, untied.nngp, rtol=1e-13)
        assert_kernel_close(tied.ntk, untied.ntk, rtol=1e-13)
        tied = ref.rnn_kernels(x1, b, tied=True, readout="mean", **RNN)
        untied = ref.rnn_kernels(x1, b, tied=False, readout="mean", **RNN)
        assert np.max(np.abs(tied.ntk - untied.ntk)) > 1e-2 * np.max(np.abs(tied.ntk))


def test_numpy_reference_kernels_are_symmetric_psd():
    x, xs = inputs(8, 12, 5), inputs(9, 12, RNN_T, RNN_D)
    cases = {
        "mlp relu": ref.mlp_kernels(x, L=4, phi="relu", sw2=2.0, sb2=0.1),
        "mlp erf": ref.mlp_kernels(x, L=4, phi="erf", sw2=1.5, sb2=0.3, svb2=0.2),
        "resnet": ref.resnet_kernels(x, L=3, alpha=0.7, phi="relu", su2=1.0, sw2=2.0),
        "rnn tied mean": ref.rnn_kernels(xs, tied=True, readout="mean", **RNN),
        "rnn untied mean": ref.rnn_kernels(xs, tied=False, readout="mean", **RNN),
        "block": ref.block_kernels(x, **BLOCK),
        "product": ref.mlp_kernels(x[:6], out="relu_erf", **G_REF),
    }
    for name, k in cases.items():
        assert_psd(k.nngp, f"{name} nngp")
        assert_psd(k.ntk, f"{name} ntk")


# finite networks: (init(rng, width), apply, empirical, reference, reference kwargs,
#                   network kwargs, batch)
_X = np.random.default_rng(123).standard_normal((4, 5))
_X[3] = _X[0] + 0.3 * np.random.default_rng(124).standard_normal(5)  # a correlated pair
_XS = np.random.default_rng(125).standard_normal((4, RNN_T, RNN_D))
_RNN_NET = dict(phi="erf", su2=1.0, sw2=1.5, sb2=0.3, sv2=1.0)


def _mlp_case(L, **kw):
    return (lambda rng, n: ref.mlp_init(rng, n, 5, L), ref.mlp_apply, ref.mlp_empirical,
            ref.mlp_kernels, dict(kw, L=L), kw, _X)


def _resnet_case(L, **kw):
    return (lambda rng, n: ref.resnet_init(rng, n, 5, L), ref.resnet_apply, ref.resnet_empirical,
            ref.resnet_kernels, dict(kw, L=L), kw, _X)


def _rnn_case(tied, readout):
    return (lambda rng, n: ref.rnn_init(rng, n, RNN_D, RNN_T, tied), ref.rnn_apply,
            ref.rnn_empirical, ref.rnn_kernels, dict(RNN, tied=tied, readout=readout),
            dict(_RNN_NET, readout=readout), _XS)


FINITE_CASES = {
    "mlp relu +readout bias": _mlp_case(3, phi="relu", sw2=2.0, sb2=0.1, svb2=0.2),
    "mlp erf": _mlp_case(3, phi="erf", sw2=1.5, sb2=0.3, su2=1.0, sv2=0.7),
    "resnet relu, output h[L]": _resnet_case(3, alpha=0.7, phi="relu", su2=1.0, sw2=2.0),
    "resnet erf, output erf(h[L])": _resnet_case(
        3, alpha=0.5, phi="erf", su2=1.5, sw2=1.0, out="erf"
    ),
    "rnn tied last": _rnn_case(True, "last"),
    "rnn untied last": _rnn_case(False, "last"),
    "rnn tied mean": _rnn_case(True, "mean"),
    "rnn untied mean": _rnn_case(False, "mean"),
    "block r = V relu(g) + g": (lambda rng, n: ref.block_init(rng, n, 5), ref.block_apply,
                                ref.block_empirical, ref.block_kernels, BLOCK, BLOCK, _X),
    "relu(g) * erf(g)": _mlp_case(2, phi="relu", su2=1.0, sw2=2.0, sb2=0.0, out="relu_erf"),
    "erf(g) + relu(g)": _mlp_case(2, phi="relu", su2=1.0, sw2=2.0, sb2=0.0, out="erf_plus_relu"),
}


@pytest.mark.parametrize("case", list(FINITE_CASES))
def test_numpy_finite_network_backprop_matches_jax_autodiff(case):
    """The manual backprop of the Monte Carlo networks equals the Jacobian contraction by JAX."""
    import jax.numpy as jnp

    init, apply, empirical, _, _, kw, X = FINITE_CASES[case]
    p = init(np.random.default_rng(0), 16)
    manual = empirical(p, X, **kw)

    def f(q):
        return apply(q, jnp.asarray(X), xp=jnp, **kw)

    jac = jax.jacrev(f)(jax.tree_util.tree_map(jnp.asarray, p))
    ntk = sum(
        np.asarray(J).reshape(len(X), -1) @ np.asarray(J).reshape(len(X), -1).T
        for J in jax.tree_util.tree_leaves(jac)
    )
    assert_kernel_close(manual.ntk, ntk, rtol=1e-12, what=case)
    # and the JAX and NumPy forward passes are the same function
    np.testing.assert_allclose(np.asarray(f(p)), apply(p, X, **kw), rtol=1e-12)


MC_WIDTH, MC_SEEDS = 1536, 12


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FINITE_CASES))
def test_numpy_reference_self_check_monte_carlo(case):
    """Each infinite-width reference against finite P2 networks: width 1536, 12 seeds.

    The seed mean of the empirical kernels converges to the reference with statistical error
    ~ c/sqrt(width * seeds), c ~ 2 (relative Frobenius), plus an O(1/width) finite-width bias. The
    error of the mean must be within 4 standard errors (estimated from the seed spread) + 2/width.
    """
    init, _, empirical, reference, ref_kw, kw, X = FINITE_CASES[case]
    samples = np.array([
        empirical(init(np.random.default_rng([2024, s]), MC_WIDTH), X, **kw)
        for s in range(MC_SEEDS)
    ])  # (seeds, 2, M, M)
    want = reference(X, **ref_kw)
    for i, name in enumerate(("nngp", "ntk")):
        mean = samples[:, i].mean(axis=0)
        se = samples[:, i].std(axis=0, ddof=1) / math.sqrt(MC_SEEDS)
        norm = np.linalg.norm(want[i])
        err = np.linalg.norm(mean - want[i]) / norm
        expected = np.sqrt(np.sum(se**2)) / norm
        assert err <= 4 * expected + 2 / MC_WIDTH, (
            f"{case} {name}: relative error {err:.4f}, statistical error {expected:.4f}"
        )
    if case.startswith("rnn") and case.endswith("mean"):
        # power: the reference with the other weight tying is rejected by the same samples
        wrong = reference(X, **dict(ref_kw, tied=not ref_kw["tied"]))
        mean = samples[:, 1].mean(axis=0)
        se = samples[:, 1].std(axis=0, ddof=1) / math.sqrt(MC_SEEDS)
        err = np.linalg.norm(mean - wrong.ntk) / np.linalg.norm(wrong.ntk)
        assert err > 4 * np.sqrt(np.sum(se**2)) / np.linalg.norm(wrong.ntk)


# --------------------------------------------------------------------------------------------------
# 2. tpcompile against the references
# --------------------------------------------------------------------------------------------------


def test_exact_value_two_layer_relu(tp):
    x = inputs(10, 6, 5)
    q = np.sum(x * x, axis=1) / 5
    k = compiled_kernels(tp, EXACT_SRC, x)
    np.testing.assert_allclose(np.diag(k.ntk), 0.75 * q + 1.75, rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.diag(k.nngp), (q + 1) / 4 + 0.5, rtol=1e-12, atol=0)
    # one input at a time, and the full matrices against the recursion
    for i in range(2):
        k1 = compiled_kernels(tp, EXACT_SRC, x[i : i + 1])
        assert k1.ntk[0, 0] == pytest.approx(0.75 * q[i] + 1.75, rel=1e-12, abs=0)
        assert k1.nngp[0, 0] == pytest.approx((q[i] + 1) / 4 + 0.5, rel=1e-12, abs=0)
    want = ref.mlp_kernels(x, L=2, phi="relu", sw2=1.0, sb2=1.0)
    assert_kernels_close(k, want, relu=True, x1=x, what="exact")


@pytest.mark.parametrize("L", [1, 2, 3, 4])
@pytest.mark.parametrize("setting", list(MLP_SETTINGS))
@pytest.mark.parametrize("phi", ["relu", "erf"])
def test_mlp_matches_reference(tp, phi, setting, L):
    kw = MLP_SETTINGS[setting]
    source = mlp_source(phi, **kw, deep=L >= 2)
    x1, x2 = inputs(11, 21, 5), inputs(12, 13, 5)
    c = tp.compile(source, params={"L": L})
    for b in (None, x2):
        got = kernels_of(c, x1, b)
        want = mlp_reference(x1, b, phi, L, **kw)
        assert_kernels_close(got, want, relu=phi == "relu", x1=x1, x2=b, what=f"x2={b is not None}")


@pytest.mark.parametrize("L", [1, 3])
@pytest.mark.parametrize("out_phi", [False, True])
@pytest.mark.parametrize("phi", ["relu", "erf"])
def test_residual_matches_reference(tp, phi, out_phi, L):
    kw = RESNET_SETTINGS[phi]
    source = resnet_source(phi, **kw, out_phi=out_phi)
    x1, x2 = inputs(13, 20, 5), inputs(14, 11, 5)
    for b in (None, x2):
        got = compiled_kernels(tp, source, x1, b, params={"L": L})
        want = ref.resnet_kernels(x1, b, L=L, phi=phi, out=phi if out_phi else "id", **kw)
        assert_kernels_close(got, want, relu=phi == "relu", x1=x1, x2=b)


def test_rnn_last_state_tied_equals_untied(tp):
    x1, x2 = inputs(15, 6, RNN_T, RNN_D), inputs(16, 4, RNN_T, RNN_D)
    for b in (None, x2):
        tied = compiled_kernels(tp, rnn_source(True, "last"), x1, b)
        untied = compiled_kernels(tp, rnn_source(False, "last"), x1, b)
        assert_kernel_close(tied.nngp, untied.nngp, what="tied vs untied nngp")
        assert_kernel_close(tied.ntk, untied.ntk, what="tied vs untied ntk")
        want = ref.rnn_kernels(x1, b, tied=True, readout="last", **RNN)
        assert_kernels_close(tied, want, relu=False, x1=x1, x2=b, what="tied")
        want = ref.rnn_kernels(x1, b, tied=False, readout="last", **RNN)
        assert_kernels_close(untied, want, relu=False, x1=x1, x2=b, what="untied")


def test_rnn_mean_pooling_tied_differs_from_untied(tp):
    x1, x2 = inputs(17, 6, RNN_T, RNN_D), inputs(18, 4, RNN_T, RNN_D)
    for b in (None, x2):
        tied = compiled_kernels(tp, rnn_source(True, "mean"), x1, b)
        untied = compiled_kernels(tp, rnn_source(False, "mean"), x1, b)
        rel = np.max(np.abs(tied.ntk - untied.ntk)) / np.max(np.abs(tied.ntk))
        assert rel > 1e-3, f"tied and untied mean-pooled NTKs agree to {rel:.1e}"
        want = ref.rnn_kernels(x1, b, tied=True, readout="mean", **RNN)
        assert_kernels_close(tied, want, relu=False, x1=x1, x2=b, what="tied")
        want = ref.rnn_kernels(x1, b, tied=False, readout="mean", **RNN)
        assert_kernels_close(untied, want, relu=False, x1=x1, x2=b, what="untied")


def test_shared_g_plus_g_is_four_times_g(tp):
    """f' = sqrt(sv2/n) v.(g + g) = 2 f for every parameter value, so every gradient doubles: the
    NNGP and the NTK are exactly 4x those of `output g` (at any width, hence in the limit). In TP
    terms: readout term sv2 E[(2g)(2g')] = 4x; backward d(2g) = sqrt(sv2) v, so dg = 2 sqrt(sv2) v
    and D_g, hence every W and U term, is 4x. Treating the two g's as independent branches (as
    neural-tangents' FanOut/FanInSum does) would give 2x."""
    x1, x2 = inputs(19, 20, 5), inputs(20, 7, 5)
    for b in (None, x2):
        g = compiled_kernels(tp, G_SRC, x1, b)
        gg = compiled_kernels(tp, G_PLUS_G_SRC, x1, b)
        assert_kernel_close(gg.nngp, 4 * g.nngp, what="nngp")
        assert_kernel_close(gg.ntk, 4 * g.ntk, what="ntk")
        want = ref.mlp_kernels(x1, b, out="id", **G_REF)
        assert_kernels_close(g, want, relu=True, x1=x1, x2=b, what="output g")


def test_shared_residual_built_from_g(tp):
    x1, x2 = inputs(21, 20, 5), inputs(22, 9, 5)
    for b in (None, x2):
        got = compiled_kernels(tp, BLOCK_SRC, x1, b)
        want = ref.block_kernels(x1, b, **BLOCK)
        assert_kernels_close(got, want, relu=True, x1=x1, x2=b)


def test_shared_product_relu_erf_of_the_same_g(tp):
    """relu(g) * erf(g) is one function psi of ONE Gaussian g: NNGP = sv2 E[psi(u) psi(v)],
    NTK = NNGP + sv2 E[psi'(u) psi'(v)] Theta_g, (u, v) ~ N(0, Sigma_g). No closed form: the
    reference integrates by conditioning Gauss-Legendre quadrature (agreeing with scipy dblquad to
    1e-15); tpcompile's numerical fallback must reach RTOL_NUMERIC = 1e-6 (NNGP and NTK)."""
    x1, x2 = inputs(23, 6, 5), inputs(24, 4, 5)
    for b in (None, x2):
        got = compiled_kernels(tp, PRODUCT_SRC, x1, b)
        want = ref.mlp_kernels(x1, b, out="relu_erf", **G_REF)
        assert_kernels_close(got, want, relu=True, x1=x1, x2=b, rtol=RTOL_NUMERIC,
                             rtol_same=RTOL_NUMERIC)
        # treating relu(g) and erf(g) as independent would give E[relu relu] E[erf erf] instead
        indep = ref.mlp_kernels(x1, b, out="relu", **G_REF).nngp * ref.mlp_kernels(
            x1, b, out="erf", **G_REF).nngp
        assert np.max(np.abs(indep - want.nngp)) > 1e-2 * np.max(np.abs(want.nngp))


def test_shared_sum_erf_plus_relu_of_the_same_g(tp):
    """erf(g) + relu(g): the NNGP includes the cross terms E[erf(u) relu(v)] = s12/sqrt(pi (1 +
    2 s11)) that a sum of independent branches misses. RTOL_NUMERIC in case the mixture has no
    closed form in tpcompile's rule table."""
    x1, x2 = inputs(25, 8, 5), inputs(26, 5, 5)
    for b in (None, x2):
        got = compiled_kernels(tp, SUM_SRC, x1, b)
        want = ref.mlp_kernels(x1, b, out="erf_plus_relu", **G_REF)
        assert_kernels_close(got, want, relu=True, x1=x1, x2=b, rtol=RTOL_NUMERIC,
                             rtol_same=RTOL_NUMERIC)


# --------------------------------------------------------------------------------------------------
# 3. properties
# --------------------------------------------------------------------------------------------------

PROPERTY_PROGRAMS = {  # name -> (source, params, input shape per example, contains relu)
    "mlp relu": (mlp_source("relu", **MLP_SETTINGS["sw2=2,sb2=.1"], deep=True), {"L": 3}, (5,),
                 True),
    "mlp erf": (mlp_source("erf", **MLP_SETTINGS["sw2=1,sb2=.5,sv2=.5,svb2=.2"], deep=True),
                {"L": 3}, (5,), False),
    "residual relu": (resnet_source("relu", **RESNET_SETTINGS["relu"], out_phi=True), {"L": 3},
                      (5,), True),
    "rnn tied mean": (rnn_source(True, "mean"), None, (RNN_T, RNN_D), False),
    "rnn untied last": (rnn_source(False, "last"), None, (RNN_T, RNN_D), False),
    "block": (BLOCK_SRC, None, (5,), True),
}


@pytest.mark.parametrize("name", list(PROPERTY_PROGRAMS))
def test_kernels_symmetric_and_psd(tp, name):
    source, params, shape, _ = PROPERTY_PROGRAMS[name]
    k = compiled_kernels(tp, source, inputs(27, 20, *shape), params=params)
    assert_psd(k.nngp, f"{name} nngp")
    assert_psd(k.ntk, f"{name} ntk")


@pytest.mark.parametrize("name", list(PROPERTY_PROGRAMS))
def test_kernel_fn_x_x_equals_kernel_fn_x(tp, name):
    source, params, shape, relu = PROPERTY_PROGRAMS[name]
    x = inputs(28, 15, *shape)
    c = tp.compile(source, params=params)
    k = c.kernel_fn(x, get=("nngp", "ntk"))
    one = ref.Kernels(np.asarray(k.nngp), np.asarray(k.ntk))
    two = kernels_of(c, x, x)
    assert_kernels_close(two, one, relu=relu, x1=x)


def test_no_nan_for_identical_inputs(tp):
    x = inputs(29, 10, 5)
    x[4] = x[1]
    x[7] = x[1]
    x2 = np.concatenate([x[:3], inputs(30, 2, 5)])
    for phi in ("relu", "erf"):
        source = mlp_source(phi, **MLP_SETTINGS["sw2=2,sb2=.1"], deep=True)
        for b in (None, x2):
            got = compiled_kernels(tp, source, x, b, params={"L": 3})
            want = mlp_reference(x, b, phi, 3, **MLP_SETTINGS["sw2=2,sb2=.1"])
            assert_kernels_close(got, want, relu=phi == "relu", x1=x, x2=b)
            for K in got:  # duplicate rows give duplicate kernel rows
                np.testing.assert_allclose(K[4], K[1], rtol=RTOL_C1, atol=RTOL * np.abs(K).max())
    xs = inputs(31, 5, RNN_T, RNN_D)
    xs[3] = xs[0]
    got = compiled_kernels(tp, rnn_source(True, "mean"), xs)
    want = ref.rnn_kernels(xs, tied=True, readout="mean", **RNN)
    assert_kernels_close(got, want, relu=False, x1=xs)


def test_no_nan_for_an_all_zero_input_row(tp):
    x = inputs(32, 8, 5)
    x[2] = 0.0
    x2 = inputs(33, 3, 5)
    x2[1] = 0.0
    # with biases the zero input has a nonzero variance: finite and equal to the reference
    for phi in ("relu", "erf"):
        source = mlp_source(phi, **MLP_SETTINGS["sw2=2,sb2=.1"], deep=True)
        for b in (None, x2):
            got = compiled_kernels(tp, source, x, b, params={"L": 3})
            want = mlp_reference(x, b, phi, 3, **MLP_SETTINGS["sw2=2,sb2=.1"])
            assert_kernels_close(got, want, relu=phi == "relu", x1=x, x2=b)
    xs = inputs(34, 5, RNN_T, RNN_D)
    xs[1] = 0.0
    got = compiled_kernels(tp, rnn_source(False, "mean"), xs)
    assert_kernels_close(got, ref.rnn_kernels(xs, tied=False, readout="mean", **RNN),
                         relu=False, x1=xs)
    # without biases every hidden vector of the zero input is 0, f = 0 for all parameters and so is
    # every gradient (relu(0) = 0, and the U gradient is proportional to x = 0): its kernel row and
    # column are exactly 0, whatever convention is used for relu'(0).
    for source, params in [
        (mlp_source("relu", **MLP_SETTINGS["sw2=3,nobias,sv2=2"], deep=True), {"L": 3}),
        (resnet_source("relu", **RESNET_SETTINGS["relu"], out_phi=False), {"L": 3}),
        (resnet_source("relu", **RESNET_SETTINGS["relu"], out_phi=True), {"L": 3}),
        (G_SRC, None),
    ]:
        for b in (None, x2):
            got = compiled_kernels(tp, source, x, b, params=params)
            for K in got:
                tol = RTOL * np.abs(K).max()
                assert np.all(np.abs(K[2]) <= tol), f"row of the zero input: {K[2]}"
                col = K[:, 2] if b is None else K[:, 1]
                assert np.all(np.abs(col) <= tol), f"column of the zero input: {col}"


def test_no_nan_depth_50_relu_mlp(tp):
    x1, x2 = inputs(35, 12, 5), inputs(36, 5, 5)
    kw = MLP_SETTINGS["sw2=2,sb2=.1"]
    source = mlp_source("relu", **kw, deep=True)
    for b in (None, x2):
        got = compiled_kernels(tp, source, x1, b, params={"L": 50})
        want = mlp_reference(x1, b, "relu", 50, **kw)
        # depth 50 drives correlations towards 1, where rounding is amplified (measured ~3e-14
        # per ulp of input off the identical pairs, 2e-7 on them)
        assert_kernels_close(got, want, relu=True, x1=x1, x2=b, rtol=RTOL_DEEP,
                             rtol_same=RTOL_C1_DEEP)
