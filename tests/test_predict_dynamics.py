"""`tpcompile.predict.gradient_descent_mse`: against independent NumPy/SciPy references
(tests/predict_reference.py), the limits t = 0 and t = ∞, neural-tangents' shape conventions
(time axes, broadcasting, what is returned), diag_reg, learning rate and dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from predict_reference import N_TEST, N_TRAIN, OUTPUTS, case, gd_mse, integrate

from tpcompile.predict import gradient_descent_mse

RTOL = 1e-9  # float64 references; the formulas are well conditioned on these kernels


def _blocks() -> tuple[np.ndarray, np.ndarray]:
    c = case()
    return c.block("ntk", "train", "train"), c.block("ntk", "test", "train")


@pytest.mark.parametrize("t", [0.3, 2.0, 25.0, None])
@pytest.mark.parametrize("diag_reg,absolute", [(0.0, False), (0.01, False), (0.05, True)])
def test_matches_the_matrix_exponential_reference(
    t: float | None, diag_reg: float, absolute: bool
) -> None:
    c = case()
    k_dd, k_td = _blocks()
    lr = 0.7
    fn = gradient_descent_mse(
        k_dd, c.y, learning_rate=lr, diag_reg=diag_reg, diag_reg_absolute_scale=absolute
    )
    train, test = fn(t, c.f0, c.g0, k_td)
    want_train, want_test = gd_mse(
        k_dd, c.y, None if t is None else lr * t, c.f0, c.g0, k_td, diag_reg, absolute
    )
    np.testing.assert_allclose(train, want_train, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(test, want_test, rtol=RTOL, atol=1e-12)


def test_matches_numerical_integration_of_the_flow() -> None:
    # Checks the conventions themselves (loss ½·mean, m = y.size, t in units of the learning
    # rate) against an ODE solver on train and test outputs together.
    c = case()
    k_dd, k_td = _blocks()
    k_all = np.vstack([k_dd, k_td])
    train, test = gradient_descent_mse(k_dd, c.y, learning_rate=2.0)(3.0, c.f0, c.g0, k_td)
    want_train, want_test = integrate(k_all, c.y, 6.0, c.f0, c.g0)
    np.testing.assert_allclose(train, want_train, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(test, want_test, rtol=1e-7, atol=1e-9)


def test_t_zero_gives_the_initial_outputs() -> None:
    c = case()
    k_dd, k_td = _blocks()
    train, test = gradient_descent_mse(k_dd, c.y)(0.0, c.f0, c.g0, k_td)
    np.testing.assert_allclose(train, c.f0, atol=1e-14)
    np.testing.assert_allclose(test, c.g0, atol=1e-14)


def test_infinite_time_is_kernel_regression() -> None:
    c = case()
    k_dd, k_td = _blocks()
    fn = gradient_descent_mse(k_dd, c.y)
    train, test = fn(None, c.f0, c.g0, k_td)
    np.testing.assert_allclose(train, c.y, rtol=0, atol=0)
    # from f(0) = 0 the test outputs are the kernel regression predictor Θ_td Θ⁻¹ y
    np.testing.assert_allclose(
        fn(None, None, 0.0, k_td), k_td @ np.linalg.solve(k_dd, c.y), rtol=1e-9
    )
    # and a long finite time (eigendecomposition) reaches the t = None result (Cholesky)
    late_train, late_test = fn(1e9, c.f0, c.g0, k_td)
    np.testing.assert_allclose(late_test, test, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(late_train, c.y, rtol=1e-7, atol=1e-9)


def test_learning_rate_rescales_time() -> None:
    c = case()
    k_dd, k_td = _blocks()
    a = gradient_descent_mse(k_dd, c.y, learning_rate=4.0)(0.5, c.f0, c.g0, k_td)
    b = gradient_descent_mse(k_dd, c.y, learning_rate=1.0)(2.0, c.f0, c.g0, k_td)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_relative_and_absolute_diag_reg() -> None:
    c = case()
    k_dd, k_td = _blocks()
    scale = np.trace(k_dd) / N_TRAIN
    rel = gradient_descent_mse(k_dd, c.y, diag_reg=0.1)(5.0, c.f0, c.g0, k_td)
    absolute = gradient_descent_mse(k_dd, c.y, diag_reg=0.1 * scale, diag_reg_absolute_scale=True)(
        5.0, c.f0, c.g0, k_td
    )
    by_hand = gradient_descent_mse(k_dd + 0.1 * scale * np.eye(N_TRAIN), c.y)(5.0, c.f0, c.g0, k_td)
    for u, v, w in zip(rel, absolute, by_hand, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12)
        np.testing.assert_allclose(u, w, rtol=1e-12)


def test_time_arrays_add_leading_axes() -> None:
    c = case()
    k_dd, k_td = _blocks()
    fn = gradient_descent_mse(k_dd, c.y)
    times = np.array([[0.0, 1.0, 4.0], [9.0, 16.0, 100.0]])
    train, test = fn(times, c.f0, c.g0, k_td)
    assert train.shape == (2, 3, N_TRAIN, OUTPUTS) and test.shape == (2, 3, N_TEST, OUTPUTS)
    for i, j in np.ndindex(times.shape):
        one_train, one_test = fn(times[i, j], c.f0, c.g0, k_td)
        np.testing.assert_allclose(train[i, j], one_train, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(test[i, j], one_test, rtol=1e-12, atol=1e-14)
    assert fn([1.0, 2.0]).shape == (2, N_TRAIN, OUTPUTS)  # lists work too


def test_what_is_returned() -> None:
    # neural-tangents: fx_train_t alone unless fx_test_0 is given; fx_test_t alone when
    # fx_train_0 is None (training still starts from 0); both otherwise.
    c = case()
    k_dd, k_td = _blocks()
    fn = gradient_descent_mse(k_dd, c.y)
    for t in (1.0, None):
        assert fn(t).shape == (N_TRAIN, OUTPUTS)
        assert fn(t, c.f0, None, k_td).shape == (N_TRAIN, OUTPUTS)  # k_test_train is unused
        test_only = fn(t, None, c.g0, k_td)
        _, test_from_zero = fn(t, 0.0, c.g0, k_td)
        np.testing.assert_allclose(test_only, test_from_zero, rtol=1e-12)
    np.testing.assert_allclose(fn(None), c.y)  # the train outputs reach y exactly


def test_initial_outputs_broadcast() -> None:
    c = case()
    k_dd, k_td = _blocks()
    fn = gradient_descent_mse(k_dd, c.y)
    for t in (2.0, None):
        scalar = fn(t, 0.25, -0.5, k_td)
        full = fn(t, np.full(c.y.shape, 0.25), np.full((N_TEST, OUTPUTS), -0.5), k_td)
        row = fn(t, np.full((1, OUTPUTS), 0.25), np.full((1, OUTPUTS), -0.5), k_td)
        for u, v, w in zip(scalar, full, row, strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-12)
            np.testing.assert_allclose(u, w, rtol=1e-12)


def test_one_dimensional_targets() -> None:
    # (n,) targets are one output: the same numbers as (n, 1), without the output axis
    c = case()
    k_dd, k_td = _blocks()
    y, f0, g0 = c.y[:, 0], c.f0[:, 0], c.g0[:, 0]
    for t in (np.array([1.0, 3.0]), None):
        one = gradient_descent_mse(k_dd, y)(t, f0, g0, k_td)
        col = gradient_descent_mse(k_dd, y[:, None])(t, f0[:, None], g0[:, None], k_td)
        for u, v in zip(one, col, strict=True):
            np.testing.assert_allclose(u, v[..., 0], rtol=1e-12)
    train, test = gradient_descent_mse(k_dd, y)(2.0, f0, g0, k_td)
    want_train, want_test = gd_mse(k_dd, y[:, None], 2.0, f0[:, None], g0[:, None], k_td)
    np.testing.assert_allclose(train, want_train[:, 0], rtol=RTOL)
    np.testing.assert_allclose(test, want_test[:, 0], rtol=RTOL)


def test_results_are_jax_arrays_in_the_kernel_dtype() -> None:
    c = case()
    k_dd, k_td = _blocks()
    for t in (1.0, None):
        train, test = gradient_descent_mse(jnp.asarray(k_dd), c.y)(t, c.f0, c.g0, k_td)
        assert isinstance(train, jax.Array) and isinstance(test, jax.Array)
        assert train.dtype == test.dtype == jnp.float64
    with jax.enable_x64(False):
        k32 = jnp.asarray(k_dd, dtype=jnp.float32)
        train, test = gradient_descent_mse(k32, c.y)(1.0, c.f0, c.g0, k_td.astype(np.float32))
        assert train.dtype == test.dtype == jnp.float32
        want_train, want_test = gd_mse(k_dd, c.y, 1.0, c.f0, c.g0, k_td)
        np.testing.assert_allclose(test, want_test, rtol=1e-3, atol=1e-4)


def test_singular_kernel_at_finite_time_stays_finite() -> None:
    # a repeated training point makes K singular (an eigenvalue ~ 0, possibly slightly
    # negative): it is clipped at 0 and contributes nothing — no NaN, unlike a 0/0
    c = case()
    k_dd, k_td = _blocks()
    rows = [0, 1, 2, 2, 3]  # point 2 twice, with the same target
    k, y, f0 = k_dd[np.ix_(rows, rows)], c.y[rows], c.f0[rows]
    train, test = gradient_descent_mse(k, y)(np.array([1.0, np.inf]), f0, c.g0, k_td[:, rows])
    assert np.all(np.isfinite(train)) and np.all(np.isfinite(test))
    np.testing.assert_allclose(train[1], y, atol=1e-8)  # t = inf on the eigen path: reaches y
