"""`tpcompile.predict` refuses bad input with `KernelInputError` (a `TPError` and, as
neural-tangents raises for the same mistakes, a `ValueError`), a message and a hint — never a
NaN result or a NumPy broadcasting traceback."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tpcompile import TPError
from tpcompile.errors import KernelInputError
from tpcompile.predict import (
    PredictInputError,
    gp_inference,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
)

Kernels = collections.namedtuple("Kernels", "nngp ntk")
N, M = 5, 3


def _kernel(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return x @ x.T / 3 + 0.5 + 0.1 * np.eye(n)  # positive definite


K = _kernel(N + M)
K_DD, K_TD, K_TT = K[:N, :N], K[N:, :N], K[N:, N:]
Y = np.arange(2 * N, dtype=float).reshape(N, 2)


def _raises(fn: Callable[[], Any], *words: str) -> PredictInputError:
    with pytest.raises(KernelInputError) as info:
        fn()
    err = info.value
    assert isinstance(err, TPError) and isinstance(err, ValueError)
    text = str(err).lower()
    for w in words:
        assert w.lower() in text, (w, text)
    return err


def test_the_error_type() -> None:
    assert issubclass(PredictInputError, KernelInputError)
    assert issubclass(PredictInputError, ValueError)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradient_descent_mse(K_DD[:, :4], Y),
        lambda: gp_inference(K_DD[:, :4], Y),
        lambda: gradient_descent_mse(K_DD[None], Y),
    ],
)
def test_train_kernel_must_be_square(make: Callable[[], Any]) -> None:
    _raises(make, "k_train_train", "shape")


@pytest.mark.parametrize("y", [Y[:4], np.zeros((N, 2, 2)), np.zeros((0, 2))])
def test_targets_must_match_the_kernel(y: np.ndarray) -> None:
    err = _raises(lambda: gradient_descent_mse(K_DD, y), "y_train", "shape")
    assert err.hint
    _raises(lambda: gp_inference(K_DD, y), "y_train")
    _raises(lambda: gradient_descent_mse_ensemble(lambda *a: K_DD, np.zeros((N, 3)), y), "y_train")


def test_test_kernels_must_match() -> None:
    fn = gradient_descent_mse(K_DD, Y)
    _raises(lambda: fn(1.0, 0.0, 0.0, K_TD[:, :4]), "k_test_train", "shape")
    _raises(lambda: fn(None, 0.0, 0.0, K_TD.T), "k_test_train", "shape")
    _raises(lambda: fn(1.0, 0.0, np.zeros((M + 1, 2)), K_TD), "fx_test_0", "broadcast")
    _raises(lambda: fn(1.0, np.zeros((N, 3)), None), "fx_train_0", "broadcast")
    gp = gp_inference(K_DD, Y)
    _raises(lambda: gp("nngp", K_TD[:, :4]), "k_test_train")
    _raises(lambda: gp("nngp", K_TD, K_TT[:2]), "k_test_test")


def test_nothing_to_predict_or_no_test_kernel() -> None:
    fn = gradient_descent_mse(K_DD, Y)
    _raises(lambda: fn(1.0, None, None), "both none")
    err = _raises(lambda: fn(1.0, 0.0, 0.0), "k_test_train")
    assert "kernel_fn(x_test, x_train" in err.hint


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_kernels_and_targets(bad: float) -> None:
    k = K_DD.copy()
    k[1, 2] = k[2, 1] = bad
    _raises(lambda: gradient_descent_mse(k, Y), "k_train_train", "nan or infinite")
    y = Y.copy()
    y[0, 0] = bad
    _raises(lambda: gp_inference(K_DD, y), "y_train", "nan or infinite")


def test_options() -> None:
    _raises(lambda: gradient_descent_mse(K_DD, Y, diag_reg=-1.0), "diag_reg")
    _raises(lambda: gradient_descent_mse(K_DD, Y, learning_rate=float("nan")), "learning_rate")
    _raises(lambda: gradient_descent_mse(K_DD, Y)(-1.0), "t must be >= 0")
    _raises(lambda: gradient_descent_mse(K_DD, Y)(np.array([1.0, np.nan])), "t contains nan")
    _raises(lambda: gradient_descent_mse(K_DD, Y, trace_axes=()), "trace_axes")
    _raises(lambda: gradient_descent_mse(Kernels(K_DD, K_DD), Y), "named tuple")
    _raises(lambda: gradient_descent_mse_ensemble("not a function", K_DD, Y), "callable")


def test_not_a_kernel_matrix() -> None:
    indefinite = K_DD - 2 * np.trace(K_DD) / N * np.eye(N)
    err = _raises(lambda: gradient_descent_mse(indefinite, Y)(1.0), "positive semi-definite")
    assert "diag_reg" in err.hint
    _raises(
        lambda: gradient_descent_mse(indefinite, Y)(None, 0.0, 0.0, K_TD),
        "not positive definite",
        "cholesky",
    )
    asymmetric = K_DD + np.triu(np.ones((N, N)), 1)
    _raises(lambda: gradient_descent_mse(asymmetric, Y)(1.0), "not symmetric")
    _raises(lambda: gp_inference(asymmetric, Y)("nngp", K_TD), "not symmetric")


def test_singular_kernel_at_infinite_time_asks_for_diag_reg() -> None:
    rows = [0, 1, 1, 2, 3]  # a repeated training point: K is singular
    k, y = K_DD[np.ix_(rows, rows)], Y[rows]
    fn = gradient_descent_mse(k, y)
    with pytest.raises(KernelInputError) as info:
        fn(None, 0.0, 0.0, K_TD[:, rows])
    assert "cholesky" in str(info.value).lower() and "diag_reg" in info.value.hint
    out = gradient_descent_mse(k, y, diag_reg=1e-8)(None, 0.0, 0.0, K_TD[:, rows])[1]
    assert np.all(np.isfinite(out))
    # a finite time is fine without regularization (the null mode is clipped)
    assert np.all(np.isfinite(fn(1e6, 0.0, 0.0, K_TD[:, rows])[1]))


def test_get() -> None:
    gp = gp_inference(Kernels(K_DD, K_DD), Y)
    _raises(lambda: gp("ntkk", K_TD), "unknown get", "ntkgp")
    _raises(lambda: gp(("nngp", "nngp"), K_TD), "unique")
    _raises(lambda: gp((), K_TD), "empty")
    ens = gradient_descent_mse_ensemble(lambda *a: K_DD, np.zeros((N, 3)), Y)
    _raises(lambda: ens(1.0, None, "ntkgp"), "unknown get")


def test_ntk_covariance_needs_the_nngp() -> None:
    err = _raises(lambda: gp_inference(K_DD, Y)("ntk", K_TD, K_TT), "nngp")
    assert "get=('nngp', 'ntk')" in err.hint
    only_ntk = collections.namedtuple("Kernels", "ntk")
    _raises(lambda: gp_inference(only_ntk(K_DD), Y)("nngp", only_ntk(K_TD)), "no `nngp`")


def test_errors_render_with_the_hint() -> None:
    err = _raises(lambda: gradient_descent_mse(K_DD, Y[:4]), "y_train")
    assert str(err).startswith("<string>: error: y_train has shape (4, 2)")
    assert "\nhint: " in str(err)
