"""The NumPy references (numpy_reference.py) checked on their own, without tpcompile: closed
forms against quadrature, degenerate covariances, Price's theorem, the two MLP formulations, RNN
special cases, symmetry/PSD, the manual backprop of the finite networks against JAX autodiff, and
(slow, `-m slow`) a Monte Carlo self-check of every infinite-width reference against finite P2
networks. Tolerances: see reference_cases.py.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import numpy_reference as ref
import pytest
from quadrature_reference import density_dblquad, graded_pair
from reference_cases import (
    BLOCK,
    G_REF,
    RNN,
    RNN_D,
    RNN_T,
    assert_kernel_close,
    assert_psd,
    inputs,
)


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
    quad = graded_pair(f, f, *COVS)
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
    for fn, V in [
        (ref.POINTWISE["relu_erf"][0], ref.relu_erf_nngp),
        (ref.POINTWISE["relu_erf"][1], ref.relu_erf_deriv_map),
    ]:
        for a, b, c in covs:
            # both functions vanish for negative arguments: integrate over the positive quadrant
            want = density_dblquad(fn, fn, a, b, c, 0, np.inf, epsabs=1e-14, epsrel=1e-13)
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
    return (
        lambda rng, n: ref.mlp_init(rng, n, 5, L),
        ref.mlp_apply,
        ref.mlp_empirical,
        ref.mlp_kernels,
        dict(kw, L=L),
        kw,
        _X,
    )


def _resnet_case(L, **kw):
    return (
        lambda rng, n: ref.resnet_init(rng, n, 5, L),
        ref.resnet_apply,
        ref.resnet_empirical,
        ref.resnet_kernels,
        dict(kw, L=L),
        kw,
        _X,
    )


def _rnn_case(tied, readout):
    return (
        lambda rng, n: ref.rnn_init(rng, n, RNN_D, RNN_T, tied),
        ref.rnn_apply,
        ref.rnn_empirical,
        ref.rnn_kernels,
        dict(RNN, tied=tied, readout=readout),
        dict(_RNN_NET, readout=readout),
        _XS,
    )


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
    "block r = V relu(g) + g": (
        lambda rng, n: ref.block_init(rng, n, 5),
        ref.block_apply,
        ref.block_empirical,
        ref.block_kernels,
        BLOCK,
        BLOCK,
        _X,
    ),
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
    samples = np.array(
        [
            empirical(init(np.random.default_rng([2024, s]), MC_WIDTH), X, **kw)
            for s in range(MC_SEEDS)
        ]
    )  # (seeds, 2, M, M)
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
