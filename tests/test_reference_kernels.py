"""Acceptance tests: tpcompile's infinite-width kernels against independent NumPy references.

The references live in ``numpy_reference.py`` and are written from the math (DESIGN §3, THEORY §3.4,
§5, P2 parameterization); they are checked on their own, without tpcompile, in
``test_numpy_reference.py`` (the slow Monte Carlo self-check of every reference against a finite
network is ``test_numpy_reference_self_check_*`` there, ``-m slow``). The tests here compile
``.tp`` programs with ``tpcompile.compile`` and skip while the package does not exist. The
programs, the tolerances (RTOL, RTOL_C1, RTOL_NUMERIC, ...) and their justification, and the
comparison helpers are in ``reference_cases.py``.

"""

from __future__ import annotations

import numpy as np
import numpy_reference as ref
import pytest
from reference_cases import (
    BLOCK,
    BLOCK_SRC,
    EXACT_SRC,
    G_PLUS_G_SRC,
    G_REF,
    G_SRC,
    MLP_SETTINGS,
    PRODUCT_SRC,
    RESNET_SETTINGS,
    RNN,
    RNN_D,
    RNN_T,
    RTOL,
    RTOL_C1,
    RTOL_C1_DEEP,
    RTOL_DEEP,
    RTOL_NUMERIC,
    SUM_SRC,
    assert_kernel_close,
    assert_kernels_close,
    assert_psd,
    compiled_kernels,
    inputs,
    kernels_of,
    mlp_reference,
    mlp_source,
    resnet_source,
    rnn_source,
)


@pytest.fixture(scope="module")
def tp():
    mod = pytest.importorskip("tpcompile")
    if getattr(mod, "__file__", None) is None:  # only the tpcompile/ directory (namespace package)
        pytest.skip("tpcompile is not implemented yet")
    return mod


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
        assert_kernels_close(
            got, want, relu=True, x1=x1, x2=b, rtol=RTOL_NUMERIC, rtol_same=RTOL_NUMERIC
        )
        # treating relu(g) and erf(g) as independent would give E[relu relu] E[erf erf] instead
        indep = (
            ref.mlp_kernels(x1, b, out="relu", **G_REF).nngp
            * ref.mlp_kernels(x1, b, out="erf", **G_REF).nngp
        )
        assert np.max(np.abs(indep - want.nngp)) > 1e-2 * np.max(np.abs(want.nngp))


def test_shared_sum_erf_plus_relu_of_the_same_g(tp):
    """erf(g) + relu(g): the NNGP includes the cross terms E[erf(u) relu(v)] = s12/sqrt(pi (1 +
    2 s11)) that a sum of independent branches misses. RTOL_NUMERIC in case the mixture has no
    closed form in tpcompile's rule table."""
    x1, x2 = inputs(25, 8, 5), inputs(26, 5, 5)
    for b in (None, x2):
        got = compiled_kernels(tp, SUM_SRC, x1, b)
        want = ref.mlp_kernels(x1, b, out="erf_plus_relu", **G_REF)
        assert_kernels_close(
            got, want, relu=True, x1=x1, x2=b, rtol=RTOL_NUMERIC, rtol_same=RTOL_NUMERIC
        )


# --------------------------------------------------------------------------------------------------
# 3. properties
# --------------------------------------------------------------------------------------------------

PROPERTY_PROGRAMS = {  # name -> (source, params, input shape per example, contains relu)
    "mlp relu": (
        mlp_source("relu", **MLP_SETTINGS["sw2=2,sb2=.1"], deep=True),
        {"L": 3},
        (5,),
        True,
    ),
    "mlp erf": (
        mlp_source("erf", **MLP_SETTINGS["sw2=1,sb2=.5,sv2=.5,svb2=.2"], deep=True),
        {"L": 3},
        (5,),
        False,
    ),
    "residual relu": (
        resnet_source("relu", **RESNET_SETTINGS["relu"], out_phi=True),
        {"L": 3},
        (5,),
        True,
    ),
    "rnn tied mean": (rnn_source(True, "mean"), None, (RNN_T, RNN_D), False),
    "rnn untied last": (rnn_source(False, "last"), None, (RNN_T, RNN_D), False),
    "block": (BLOCK_SRC, None, (5,), True),
}


@pytest.mark.parametrize("name", list(PROPERTY_PROGRAMS))
def test_kernels_symmetric_and_psd(tp, name):
    # on kernel_fn(x, x): kernel_fn(x) is symmetrised ((K + K.T)/2), so symmetric by construction
    source, params, shape, _ = PROPERTY_PROGRAMS[name]
    x = inputs(27, 20, *shape)
    k = compiled_kernels(tp, source, x, x, params=params)
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
    assert_kernels_close(
        got, ref.rnn_kernels(xs, tied=False, readout="mean", **RNN), relu=False, x1=xs
    )
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
        assert_kernels_close(
            got, want, relu=True, x1=x1, x2=b, rtol=RTOL_DEEP, rtol_same=RTOL_C1_DEEP
        )
