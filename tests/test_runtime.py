"""Tests for tpcompile.runtime: the numerical Gaussian expectations of generated kernel modules.

Reference values are closed forms derived here (moments, lognormal, erf arcsine, arc-cosine,
Isserlis, Stein's lemma, normal CDFs) or, for tanh, a trapezoid rule, which converges geometrically
for integrands analytic in a strip (THEORY.md §6.1); kinks away from 0 are checked against scipy's
adaptive quad with the kink as a breakpoint (both rules: tests/quadrature_reference.py).
Tolerances follow the accuracy of each rule:
- the split Gauss-Legendre rule (`gauss_pair`, `split_pair`) and the 1-D panel rule (`gauss_mean`,
  `quad_mean`) integrate functions analytic between their kinks to ~1e-13 at moderate variances;
- the Mehler series (`hermite_expansion`, `mehler_pair`) must meet its own reported bound, and the
  bound must be near the requested tolerance;
- Monte Carlo: the exact value must lie within 4 reported standard errors (a 4-sigma event has
  probability 6e-5 per entry, and the seeds are fixed, so the tests are deterministic).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from quadrature_reference import relu_pair_conditional, trapezoid_pair
from scipy.special import erf as np_erf
from scipy.stats import norm

from tpcompile.runtime import (
    columns,
    gauss_mean,
    gauss_pair,
    hermite_expansion,
    hermite_pair,
    integrand,
    mc_mean,
    mc_pair,
    mehler_pair,
    quad_mean,
    split_pair,
    tensor_mean,
    tensor_pair,
)
from tpcompile.runtime import gram as data_gram
from tpcompile.runtime import rows as rows_of

erf = jax.scipy.special.erf
Arr = np.ndarray | float


# --------------------------------------------------------------------------------------------------
# Closed forms


def erf_kernel(s11: Arr, s12: Arr, s22: Arr) -> Arr:
    """E[erf(u) erf(v)], zero means: (2/pi) arcsin(2 s12 / sqrt((1 + 2 s11)(1 + 2 s22)))."""
    return 2 / np.pi * np.arcsin(2 * s12 / np.sqrt((1 + 2 * s11) * (1 + 2 * s22)))


def lognormal_pair(s11: Arr, s12: Arr, s22: Arr, m1: float, m2: float) -> Arr:
    """E[exp(u) exp(v)] = E[exp(u + v)], u + v ~ N(m1 + m2, s11 + 2 s12 + s22)."""
    return np.exp(m1 + m2 + (s11 + 2 * s12 + s22) / 2)


def relu_kernel(s11: Arr, s12: Arr, s22: Arr) -> Arr:
    """E[relu(u) relu(v)] = sqrt(s11 s22) / (2 pi) (sin t + (pi - t) cos t), cos t = correlation."""
    norm = np.sqrt(s11 * s22)
    c = np.clip(s12 / np.where(norm > 0, norm, 1), -1, 1)  # norm = 0 (zero input) gives 0
    t = np.arccos(c)
    return norm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * c)


def gram(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kernel-like covariances of a batch with a zero input, a duplicate and a negated input.

    Returns (diag1 (N1, 1), cross (N1, N2), diag2 (1, N2)) with variances in [0, 1.5], so that the
    joint 2x2 covariance of every entry is PSD, exactly singular for the duplicate (c = 1) and
    negated (c = -1) pairs, and zero for the zero input.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 6))
    x *= np.sqrt(rng.uniform(0.2, 1.5, size=(4, 1)) * 6) / np.linalg.norm(x, axis=1, keepdims=True)
    x1 = np.concatenate([x[:3], np.zeros((1, 6))])  # N1 = 4, last input is zero
    x2 = np.concatenate([x[1:], x[:1], -x[2:3]])  # N2 = 5, shares inputs with x1, one negated
    s11 = np.sum(x1**2, axis=1, keepdims=True) / 6
    s22 = np.sum(x2**2, axis=1, keepdims=True).T / 6
    return s11, x1 @ x2.T / 6, s22


# --------------------------------------------------------------------------------------------------
# gauss_mean


def test_gauss_mean_closed_forms() -> None:
    s = np.array([0.0, 0.3, 1.0, 2.0, 1.5])
    m = np.array([0.0, -0.7, 0.4, 1.1, 0.0])
    cases = [
        (lambda u: u**2, s + m**2),
        (jnp.exp, np.exp(m + s / 2)),
        (erf, np_erf(m / np.sqrt(1 + 2 * s))),  # erf smoothed by a Gaussian is a wider erf
        (jnp.cos, np.cos(m) * np.exp(-s / 2)),
    ]
    for f, exact in cases:
        np.testing.assert_allclose(gauss_mean(f, s, m), exact, rtol=1e-12, atol=1e-14)


def test_gauss_mean_broadcasts_and_is_exact_for_polynomials() -> None:
    s = np.linspace(0.0, 2.0, 12).reshape(3, 4)
    m = np.array([0.5, -1.0, 0.0, 2.0])  # broadcasts against the last axis of s
    # Split Gauss-Legendre at the default degree integrates smooth pieces to rounding level.
    out = gauss_mean(lambda u: u**4, s, m)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, m**4 + 6 * m**2 * s + 3 * s**2, rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# gauss_pair


def test_gauss_pair_bilinear_with_means() -> None:
    s11, s12, s22 = gram()
    m1, m2 = 0.7, -1.3
    exact = s12 + m1 * m2
    # Smooth on every piece: the split Gauss-Legendre rule reaches rounding level.
    out = gauss_pair(lambda u: u, lambda v: v, s11, s12, s22, m1, m2)
    assert out.shape == exact.shape == (4, 5)
    np.testing.assert_allclose(out, exact, rtol=1e-12, atol=1e-13)


def test_gauss_pair_lognormal_with_means() -> None:
    s11, s12, s22 = gram(1)
    for m1, m2 in [(0.0, 0.0), (0.5, -0.25), (-1.0, 2.0)]:
        out = gauss_pair(jnp.exp, jnp.exp, s11, s12, s22, m1, m2)
        np.testing.assert_allclose(out, lognormal_pair(s11, s12, s22, m1, m2), rtol=1e-12)


def test_gauss_pair_erf_arcsine_on_broadcast_grid() -> None:
    s11, s12, s22 = gram(2)
    out = gauss_pair(erf, erf, s11, s12, s22)
    assert out.shape == (4, 5)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, erf_kernel(s11, s12, s22), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("c", [-0.99, -0.5, 0.0, 0.5, 0.99])
def test_gauss_pair_erf_scalar_correlations(c: float) -> None:
    s11, s22 = 1.0, 1.5
    s12 = c * np.sqrt(s11 * s22)
    out = gauss_pair(erf, erf, s11, s12, s22)
    np.testing.assert_allclose(out, erf_kernel(s11, s12, s22), rtol=1e-12, atol=1e-15)


def test_gauss_pair_zero_variance() -> None:
    s22 = np.array([0.0, 0.5, 2.0])
    zero = np.zeros(3)
    # s11 = 0: u is the constant m1 and independent of v.
    out = gauss_pair(jnp.exp, jnp.exp, zero, zero, s22, 0.3, -0.2)
    np.testing.assert_allclose(out, np.exp(0.3) * np.exp(-0.2 + s22 / 2), rtol=1e-12)
    out = gauss_pair(erf, erf, zero, zero, s22)
    np.testing.assert_array_equal(out, np.zeros(3))
    # s22 = 0 (and both zero): the other variable is the constant.
    out = gauss_pair(jnp.exp, jnp.exp, s22, zero, zero, -0.2, 0.3)
    np.testing.assert_allclose(out, np.exp(0.3) * np.exp(-0.2 + s22 / 2), rtol=1e-12)
    # s11 = 0 with a (rounding-size) nonzero s12 must not produce inf or NaN.
    out = gauss_pair(jnp.tanh, jnp.tanh, zero, np.full(3, 1e-18), s22, 0.5, 0.0)
    assert np.all(np.isfinite(out))
    # Gradients stay finite at zero variance (safe square roots).
    grad = jax.grad(lambda a: jnp.sum(gauss_pair(erf, erf, a, 0.0 * a, 1.0 + a)))(jnp.zeros(3))
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gauss_pair_perfect_correlation(sign: float) -> None:
    s11, s22 = np.array([0.5, 1.0, 2.0]), np.array([1.0, 1.0, 0.3])
    s12 = sign * np.sqrt(s11 * s22)
    out = gauss_pair(erf, erf, s11, s12, s22)
    np.testing.assert_allclose(out, erf_kernel(s11, s12, s22), rtol=1e-12)
    out = gauss_pair(jnp.exp, jnp.exp, s11, s12, s22, 0.1, -0.4)
    np.testing.assert_allclose(out, lognormal_pair(s11, s12, s22, 0.1, -0.4), rtol=1e-12)
    # Rounding can push |corr| slightly past 1: treated as |corr| = 1, not NaN.
    out = gauss_pair(erf, erf, s11, s12 * (1 + 1e-12), s22)
    np.testing.assert_allclose(out, erf_kernel(s11, s12, s22), rtol=1e-11)


@pytest.mark.parametrize("c", [0.5, 0.99])
def test_gauss_pair_tanh_default_degree_accuracy_and_jit(c: float) -> None:
    ref = float(trapezoid_pair(np.tanh, np.tanh, 1.0, c, 1.0))
    f = jax.jit(lambda a, b, d: gauss_pair(jnp.tanh, jnp.tanh, a, b, d))
    out = f(1.0, c, 1.0)
    np.testing.assert_allclose(out, ref, rtol=1e-10)
    np.testing.assert_allclose(out, gauss_pair(jnp.tanh, jnp.tanh, 1.0, c, 1.0), rtol=1e-14)


def test_gauss_float32_follows_input_dtype() -> None:
    s11, s12, s22 = (x.astype(np.float32) for x in gram(3))
    out = gauss_pair(erf, erf, s11, s12, s22)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, erf_kernel(*gram(3)), rtol=1e-5, atol=1e-6)
    mean = gauss_mean(jnp.exp, np.float32([0.0, 1.0, 30.0]))
    assert mean.dtype == jnp.float32
    np.testing.assert_allclose(mean, np.exp([0.0, 0.5, 15.0]), rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Monte Carlo


def four_variable_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a1, a2) for N1 = 2 inputs and (b1, b2) for N2 = 3 inputs as linear maps of one Gaussian.

    cov_ll (2, 1, 2, 2), cov_lr (2, 3, 2, 2), cov_rr (1, 3, 2, 2); the joint covariance of every
    entry is PSD by construction. The second N2 input repeats the first N1 input's maps, so those
    entries have a singular 4x4 covariance.
    """
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(2, 2, 5)) / np.sqrt(5)
    B = rng.normal(size=(3, 2, 5)) / np.sqrt(5)
    B[1] = A[0]
    cov_ll = np.einsum("ird,isd->irs", A, A)[:, None]
    cov_lr = np.einsum("ird,jsd->ijrs", A, B)
    cov_rr = np.einsum("jrd,jsd->jrs", B, B)[None]
    return cov_ll, cov_lr, cov_rr


def joint_cov(cov_ll: np.ndarray, cov_lr: np.ndarray, cov_rr: np.ndarray) -> np.ndarray:
    batch = np.broadcast_shapes(cov_ll.shape[:-2], cov_lr.shape[:-2], cov_rr.shape[:-2])
    k, m = cov_lr.shape[-2:]
    ll = np.broadcast_to(cov_ll, batch + (k, k))
    lr = np.broadcast_to(cov_lr, batch + (k, m))
    rr = np.broadcast_to(cov_rr, batch + (m, m))
    return np.block([[ll, lr], [np.swapaxes(lr, -1, -2), rr]])


def product_moment(cov: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """E[x1 x2 x3 x4], x ~ N(mean, cov) (batched): expand x = mean + y, Isserlis for E[y y y y]."""
    out = np.prod(mean)
    for r, s in itertools.combinations(range(4), 2):
        rest = [t for t in range(4) if t not in (r, s)]
        out = out + cov[..., r, s] * mean[rest[0]] * mean[rest[1]]
    wick = sum(
        cov[..., p, q] * cov[..., r, s]
        for (p, q), (r, s) in [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    )
    return out + wick


def assert_within(est: Arr, se: Arr, exact: Arr, n_se: float = 4.0) -> None:
    est, se = np.asarray(est), np.asarray(se)
    assert est.shape == se.shape == np.shape(exact)
    assert np.all(np.isfinite(est)) and np.all(np.isfinite(se))
    z = np.abs(est - exact) / np.maximum(se, 1e-300)
    assert np.all(np.abs(est - exact) <= n_se * se + 1e-12), f"|error| / se = {z}"


def test_mc_pair_two_variables_relu() -> None:
    s11, s12, s22 = gram(4)
    cov_ll, cov_lr, cov_rr = (x[..., None, None] for x in (s11, s12, s22))
    relu = jax.nn.relu
    est, se = mc_pair(relu, relu, cov_ll, cov_lr, cov_rr, (0.0,), (0.0,))
    assert_within(est, se, relu_kernel(s11, s12, s22))
    # The standard error is a useful size, not vacuous: ~1e-2 relative at 65536 samples.
    assert np.all(se <= 0.02 * np.sqrt(s11 * s22) + 1e-15)


def test_mc_pair_four_variables_isserlis_with_means() -> None:
    cov_ll, cov_lr, cov_rr = four_variable_problem()
    mean_l, mean_r = (0.3, -0.5), (0.0, 0.8)
    est, se = mc_pair(
        lambda a1, a2: a1 * a2, lambda b1, b2: b1 * b2, cov_ll, cov_lr, cov_rr, mean_l, mean_r
    )
    exact = product_moment(joint_cov(cov_ll, cov_lr, cov_rr), np.array(mean_l + mean_r))
    assert est.shape == (2, 3)
    assert_within(est, se, exact)


def test_mc_mean_exp_cos() -> None:
    # E[exp(a1) cos(a2)] = Re E[exp(a1 + i a2)] = exp(m1 + (C11 - C22)/2) cos(m2 + C12).
    cov_ll, _, _ = four_variable_problem(1)
    cov = cov_ll[:, 0]  # (2, 2, 2)
    mean = (0.2, -0.4)
    est, se = mc_mean(lambda a1, a2: jnp.exp(a1) * jnp.cos(a2), cov, mean)
    exact = np.exp(mean[0] + (cov[:, 0, 0] - cov[:, 1, 1]) / 2) * np.cos(mean[1] + cov[:, 0, 1])
    assert_within(est, se, exact)


def test_mc_standard_error_shrinks_like_inverse_sqrt_samples() -> None:
    cov_ll, cov_lr, cov_rr = four_variable_problem(2)
    f = lambda a1, a2: a1 * jnp.tanh(a2)  # noqa: E731
    g = lambda b1, b2: jnp.exp(b1 / 2) + b2  # noqa: E731
    _, se_small = mc_pair(f, g, cov_ll, cov_lr, cov_rr, (0.1, 0.2), (0.3, 0.4), samples=4096)
    _, se_large = mc_pair(f, g, cov_ll, cov_lr, cov_rr, (0.1, 0.2), (0.3, 0.4), samples=65536)
    ratio = np.asarray(se_small / se_large)  # sqrt(65536 / 4096) = 4
    assert np.all((ratio > 3.3) & (ratio < 4.8)), ratio


def test_mc_singular_covariances_give_no_nan() -> None:
    # Identical inputs: a1 = a2 = b1 = b2 (rank 1); zero inputs: everything constant (rank 0).
    ones = np.ones((2, 2))
    cov = np.stack([ones, 0 * ones])
    mean = (0.5, -0.5)
    f = lambda x, y: jnp.exp(x) * (1 + y)  # noqa: E731
    est, se = mc_pair(f, f, cov, cov, cov, mean, mean)
    # rank 1: a = b = (0.5 + t, -0.5 + t), t ~ N(0, 1), so f(a) f(b) = (exp(0.5 + t) (0.5 + t))^2,
    # an entire integrand that 1-D Gauss-Hermite gets to rounding level.
    rank1 = float(gauss_mean(lambda t: (jnp.exp(0.5 + t) * (0.5 + t)) ** 2, 1.0))
    rank0 = (np.exp(0.5) * 0.5) ** 2
    assert_within(est, se, np.array([rank1, rank0]))
    # rank 0: every draw gives the same value; only rounding in the running mean remains.
    assert se[1] <= 1e-15 * rank0 and est[1] == pytest.approx(rank0, rel=1e-14)
    est, se = mc_mean(f, cov, mean)
    assert np.all(np.isfinite(est)) and np.all(np.isfinite(se))


def test_mc_common_random_numbers_and_seeds() -> None:
    cov_ll, cov_lr, cov_rr = four_variable_problem(3)
    f = lambda a1, a2: jnp.tanh(a1 + a2)  # noqa: E731
    g = lambda b1, b2: jnp.sin(b1) * b2  # noqa: E731
    args = (cov_ll, cov_lr, cov_rr, (0.0, 0.1), (0.2, 0.0))
    est, se = mc_pair(f, g, *args, samples=8192)
    again, se_again = mc_pair(f, g, *args, samples=8192)
    np.testing.assert_array_equal(est, again)
    np.testing.assert_array_equal(se, se_again)
    other, _ = mc_pair(f, g, *args, samples=8192, seed=1)
    assert not np.allclose(est, other)
    # Same draws for every batch entry: an entry computed alone equals the entry in the batch.
    alone, _ = mc_pair(f, g, cov_ll[1, 0], cov_lr[1, 2], cov_rr[0, 2], *args[3:], samples=8192)
    np.testing.assert_allclose(alone, est[1, 2], rtol=1e-12)
    # ... and under jit, with a sample count that is not a multiple of the chunk.
    jitted = jax.jit(lambda *a: mc_pair(f, g, *a, (0.0, 0.1), (0.2, 0.0), samples=10000))
    eager = mc_pair(f, g, *args, samples=10000)
    np.testing.assert_allclose(jitted(*args[:3])[0], eager[0], rtol=1e-12)
    np.testing.assert_allclose(jitted(*args[:3])[1], eager[1], rtol=1e-10)


def test_mc_float32_follows_input_dtype() -> None:
    cov_ll, cov_lr, cov_rr = (x.astype(np.float32) for x in four_variable_problem(4))
    mean_l, mean_r = (0.3, -0.5), (0.0, 0.8)
    est, se = mc_pair(
        lambda a1, a2: a1 * a2, lambda b1, b2: b1 * b2, cov_ll, cov_lr, cov_rr, mean_l, mean_r
    )
    assert est.dtype == se.dtype == jnp.float32
    exact = product_moment(
        joint_cov(*(x.astype(np.float64) for x in (cov_ll, cov_lr, cov_rr))),
        np.array(mean_l + mean_r),
    )
    assert np.all(np.abs(np.asarray(est, np.float64) - exact) <= 4 * se + 1e-5)
    est, se = mc_mean(lambda a1, a2: a1 * a2, cov_ll[:, 0], mean_l)
    assert est.dtype == se.dtype == jnp.float32


def test_mc_rejects_inconsistent_shapes() -> None:
    cov = np.eye(2)
    with pytest.raises(ValueError, match="mean_l"):
        mc_pair(lambda a: a, lambda b: b, cov, cov, cov, (0.0,), (0.0, 0.0))
    with pytest.raises(ValueError, match="cov_lr"):
        mc_pair(lambda a, b: a, lambda c: c, cov, np.ones((2, 1)), cov, (0.0, 0.0), (0.0,))
    with pytest.raises(ValueError, match="samples"):
        mc_mean(lambda a, b: a, cov, (0.0, 0.0), samples=2)


# --------------------------------------------------------------------------------------------------
# Kinks away from 0, the 1-D panel rule and plain Gauss-Hermite


def test_split_pair_with_kinks_away_from_zero() -> None:
    relu = jax.nn.relu
    for a, b, (s11, c, s22), (m1, m2) in [
        (0.7, -0.4, (1.0, 0.5, 1.5), (0.2, -0.3)),
        (-1.0, 1.2, (2.0, -0.8, 0.5), (0.0, 0.5)),
    ]:
        s12 = c * np.sqrt(s11 * s22)
        est = split_pair(
            lambda u, a=a: relu(u - a),
            lambda v, b=b: relu(v - b),
            s11,
            s12,
            s22,
            m1,
            m2,
            kinks_f=(a,),
            kinks_g=(b,),
            degree=48,
        )
        exact = relu_pair_conditional(a, b, s11, s12, s22, m1, m2)
        np.testing.assert_allclose(est.value, exact, rtol=1e-12)
        assert est.error <= 1e-12 and abs(est.value - exact) <= est.error + 1e-15
        # cut at the wrong place (0), the same degree is far worse, and the estimate says so
        wrong = split_pair(
            lambda u, a=a: relu(u - a), lambda v, b=b: relu(v - b), s11, s12, s22, m1, m2, degree=48
        )
        assert abs(wrong.value - exact) > 1e3 * abs(est.value - exact) and wrong.error > 1e-9


def test_quad_mean_kink_and_estimate() -> None:
    s = np.array([0.0, 0.5, 1.0, 4.0])
    m, k = 0.3, 0.7
    est = quad_mean(lambda u: jax.nn.relu(u - k), s, m, kinks=(k,))
    sd = np.sqrt(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(
            sd > 0, (m - k) * norm.cdf((m - k) / sd) + sd * norm.pdf((m - k) / sd), max(m - k, 0.0)
        )
    np.testing.assert_allclose(est.value, exact, rtol=1e-13, atol=1e-16)
    assert np.all(est.error <= 1e-13)


def test_hermite_pair_reference_rule() -> None:
    s11, s12, s22 = gram(5)
    est = hermite_pair(erf, erf, s11, s12, s22, degree=96)
    np.testing.assert_allclose(est.value, erf_kernel(s11, s12, s22), rtol=1e-12, atol=1e-14)
    assert np.all(np.isnan(est.error))  # a reference rule: no estimate


# --------------------------------------------------------------------------------------------------
# Hermite expansions and the Mehler series


def erf_mean(s: Arr, m: Arr) -> Arr:
    return np_erf(m / np.sqrt(1 + 2 * s))


@pytest.mark.parametrize("tol", [1e-6, 1e-10, 1e-12])
def test_mehler_erf_matches_closed_form_within_its_bound(tol: float) -> None:
    s11, s12, s22 = gram(6)  # includes c = +-1 and a zero input
    a = hermite_expansion(erf, s11[:, 0], tol=tol)
    b = hermite_expansion(erf, s22[0], tol=tol)
    est = mehler_pair(a[:, None], b[None, :], s11, s12, s22, tol=tol)
    exact = erf_kernel(s11, s12, s22)
    assert est.value.shape == (4, 5) and np.all(np.isfinite(est.value))
    assert np.all(np.abs(est.value - exact) <= est.error + 1e-15)
    norms = np.sqrt(np.asarray(a.norm)[:, None] * np.asarray(b.norm)[None, :])
    assert np.all(est.error <= tol * norms**2 + 1e-15)
    assert 0 < est.terms <= a.terms


@pytest.mark.parametrize("c", [-1.0, 0.5, 0.99, 1.0])
def test_mehler_tanh_with_means_against_trapezoid(c: float) -> None:
    s11, s22, m1, m2 = 2.0, 3.0, 0.3, -0.5
    s12 = c * np.sqrt(s11 * s22)
    shift = lambda m: lambda x: np.tanh(m + x)  # noqa: E731
    ref = float(trapezoid_pair(shift(m1), shift(m2), s11, s12, s22, h=0.04))
    a = hermite_expansion(jnp.tanh, np.array([s11]), m1)
    b = hermite_expansion(jnp.tanh, np.array([s22]), m2)
    est = mehler_pair(a, b, s11, s12, s22)
    assert abs(float(est.value[0]) - ref) <= float(est.error[0]) + 1e-14
    assert float(est.error[0]) <= 1e-10


def test_mehler_zero_variance_and_polynomial_partner() -> None:
    s = np.array([0.0, 1.0, 2.5])
    m1, m2 = 0.4, -0.2
    # s11 = 0: u is the constant m1, so E[erf(u) erf(v)] = erf(m1) E[erf(v)]
    a = hermite_expansion(erf, np.zeros(3), m1)
    b = hermite_expansion(erf, s, m2)
    est = mehler_pair(a, b, 0.0, 0.0, s)
    np.testing.assert_allclose(est.value, np_erf(m1) * erf_mean(s, m2), rtol=1e-12, atol=1e-15)
    # u (exactly two coefficients, tail 0) against relu with a kink cut: Stein's lemma gives
    # E[u relu(v)] = m1 E relu(v) + s12 P(v > 0)
    s12 = 0.6 * np.sqrt(s)
    poly = hermite_expansion(lambda u: u, np.ones(3), m1, order=2, complete=True)
    rel = hermite_expansion(jax.nn.relu, s, m2, kinks=(0.0,), order=2)
    est = mehler_pair(poly, rel, 1.0, s12, s)
    sd = np.sqrt(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        relu_mean = np.where(sd > 0, m2 * norm.cdf(m2 / sd) + sd * norm.pdf(m2 / sd), 0.0)
        p_pos = np.where(sd > 0, norm.cdf(m2 / sd), 0.0)
    np.testing.assert_allclose(est.value, m1 * relu_mean + s12 * p_pos, rtol=1e-13, atol=1e-15)
    assert est.terms <= 2 and np.all(est.error <= 1e-14)


def test_mehler_float32_and_under_jit() -> None:
    s11, s12, s22 = gram(7)
    f32 = [x.astype(np.float32) for x in (s11, s12, s22)]
    a = hermite_expansion(erf, f32[0][:, 0])
    b = hermite_expansion(erf, f32[2][0])
    est = mehler_pair(a[:, None], b[None, :], *f32)
    assert est.value.dtype == jnp.float32
    np.testing.assert_allclose(est.value, erf_kernel(s11, s12, s22), rtol=1e-5, atol=1e-6)

    @jax.jit
    def traced(s: jax.Array) -> jax.Array:  # no adaptive choices: the first stage, all terms
        e = hermite_expansion(jnp.tanh, s)
        return mehler_pair(e, e, s, 0.5 * s, s).value

    s = jnp.array([0.5, 1.0])
    e = hermite_expansion(jnp.tanh, s)
    eager = mehler_pair(e, e, s, 0.5 * s, s)
    np.testing.assert_allclose(traced(s), eager.value, rtol=0, atol=float(jnp.max(eager.error)))


# --------------------------------------------------------------------------------------------------
# Tensor Gauss-Hermite and Monte Carlo blocks


def test_tensor_rules_are_exact_for_polynomials_and_smooth_functions() -> None:
    cov_ll, cov_lr, cov_rr = four_variable_problem(5)
    mean_l, mean_r = (0.3, -0.5), (0.0, 0.8)
    est = tensor_pair(
        lambda a1, a2: a1 * a2,
        lambda b1, b2: b1 * b2,
        cov_ll,
        cov_lr,
        cov_rr,
        mean_l,
        mean_r,
        degree=8,
    )
    exact = product_moment(joint_cov(cov_ll, cov_lr, cov_rr), np.array(mean_l + mean_r))
    np.testing.assert_allclose(est.value, exact, rtol=1e-12, atol=1e-14)
    cov = cov_ll[:, 0]
    est = tensor_mean(lambda a1, a2: jnp.exp(a1) * jnp.cos(a2), cov, (0.2, -0.4), degree=16)
    exact = np.exp(0.2 + (cov[:, 0, 0] - cov[:, 1, 1]) / 2) * np.cos(-0.4 + cov[:, 0, 1])
    np.testing.assert_allclose(est.value, exact, rtol=1e-12)
    assert np.all(est.error <= 1e-10)


def test_mc_draws_do_not_depend_on_chunking() -> None:
    cov_ll, cov_lr, cov_rr = four_variable_problem(6)
    f = lambda a1, a2: jnp.tanh(a1) * a2  # noqa: E731
    args = (f, f, cov_ll, cov_lr, cov_rr, (0.1, 0.0), (0.0, 0.2))
    small = mc_pair(*args, samples=10000, chunk=512)
    large = mc_pair(*args, samples=10000, chunk=8192)
    np.testing.assert_allclose(small.value, large.value, rtol=1e-12)
    np.testing.assert_allclose(small.error, large.error, rtol=1e-9)
    stream = mc_pair(*args, samples=10000, seed=(0, 5))  # another quantity: other draws
    assert not np.allclose(stream.value, small.value)


def test_integrands_equal_by_code_whatever_their_argument_names() -> None:
    # Generated integrands over batch 1's variables (u0, u1) and batch 2's (w0, w1) with the same
    # body must share one compilation; a different body, constant or arity must not.
    namespace: dict = {"jnp": jnp}
    exec(  # noqa: S102 - fixed test text
        "def a(u0, u1):\n    return jnp.tanh(u1)*u0\n"
        "def b(w0, w1):\n    return jnp.tanh(w1)*w0\n"
        "def c(w0, w1):\n    return jnp.tanh(w0)*w1\n"
        "def d(w0, w1):\n    return 2.0*jnp.tanh(w1)*w0\n"
        "def e(w0, w1, w2):\n    return jnp.tanh(w1)*w0\n",
        namespace,
    )
    a, b, c, d, e = (integrand(namespace[k]) for k in "abcde")
    assert a == b and hash(a) == hash(b)
    assert len({a, c, d, e}) == 4


def test_columns_and_rows_are_the_broadcast_diagonal() -> None:
    # `cross` reads each per-example quantity as a column (batch 1) or a row (batch 2): the same
    # values as indexing with None, bitwise, Hermite expansions included; labels are dropped.
    x = jnp.asarray(np.random.default_rng(3).normal(size=5))
    expansion = hermite_expansion(jnp.tanh, 1.0 + x**2, 0.1 * x)
    diagonal = {4: x, 7: expansion, "nngp": x}
    cols, rows = columns(diagonal), rows_of(diagonal)
    assert set(cols) == set(rows) == {4, 7}
    for lifted, index in ((cols, (slice(None), None)), (rows, (None, slice(None)))):
        np.testing.assert_array_equal(lifted[4], x[index])
        for got, want in zip(
            jax.tree_util.tree_leaves(lifted[7]),
            jax.tree_util.tree_leaves(expansion[index]),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)


def test_gram_at_traced_positions_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    x1, x2 = rng.normal(size=(3, 4, 5)), rng.normal(size=(2, 4, 5))
    for p, q in ((0, 0), (1, 3), (3, 2)):
        np.testing.assert_allclose(data_gram(x1, x2, p, q), x1[:, p] @ x2[:, q].T / 5, rtol=1e-13)
        # A list of pairs (x1[a], x2[a]): the grid's diagonal, in the same summation order.
        pairs = data_gram(x1[:2], x2, p, q, paired=True)
        np.testing.assert_array_equal(pairs, np.diag(data_gram(x1[:2], x2, p, q)))
