"""`tpcompile.predict.gp_inference` and `gradient_descent_mse_ensemble`: against independent
NumPy references (tests/predict_reference.py), neural-tangents' `get` and return conventions,
t = 0 (the prior) and t = ∞ (gp_inference), positive semi-definite covariances."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from predict_reference import (
    N_TEST,
    N_TRAIN,
    OUTPUTS,
    case,
    compiled,
    ensemble,
    gp_posterior,
    regularize,
)

from tpcompile.predict import (
    Gaussian,
    gp_inference,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
)

RTOL = 1e-9


Kernels = collections.namedtuple("Kernels", "nngp ntk")  # as kernel_fn returns them


def _kernels(rows: str, cols: str) -> Kernels:
    c = case()
    return Kernels(c.block("nngp", rows, cols), c.block("ntk", rows, cols))


def _joint_prior() -> np.ndarray:
    """The NNGP over (test, train), the order `ensemble` expects."""
    order = np.r_[N_TRAIN : N_TRAIN + N_TEST, 0:N_TRAIN]
    return case().nngp[np.ix_(order, order)]


@pytest.mark.parametrize("diag_reg", [0.0, 1e-3])
def test_nngp_posterior_is_the_gp_posterior(diag_reg: float) -> None:
    c = case()
    dd, td, tt = _kernels("train", "train"), _kernels("test", "train"), _kernels("test", "test")
    out = gp_inference(dd, c.y, diag_reg=diag_reg)("nngp", td, tt)
    mean, cov = gp_posterior(dd.nngp, td.nngp, tt.nngp, c.y, diag_reg)
    assert isinstance(out, Gaussian)
    np.testing.assert_allclose(out.mean, mean, rtol=RTOL)
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-8, atol=1e-12)


def test_ntkgp_posterior_is_the_gp_posterior_of_the_ntk() -> None:
    c = case()
    dd, td, tt = _kernels("train", "train"), _kernels("test", "train"), _kernels("test", "test")
    out = gp_inference(dd, c.y)("ntkgp", td, tt)
    mean, cov = gp_posterior(dd.ntk, td.ntk, tt.ntk, c.y)
    np.testing.assert_allclose(out.mean, mean, rtol=RTOL)
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-8, atol=1e-12)


def test_ntk_posterior_is_the_infinitely_trained_ensemble() -> None:
    c = case()
    dd, td, tt = _kernels("train", "train"), _kernels("test", "train"), _kernels("test", "test")
    out = gp_inference(dd, c.y)("ntk", td, tt)
    mean, cov = ensemble(_joint_prior(), dd.ntk, td.ntk, c.y, None)
    np.testing.assert_allclose(out.mean, mean, rtol=RTOL)
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-8, atol=1e-12)
    assert np.linalg.eigvalsh(np.asarray(out.covariance)).min() > -1e-10


def test_get_conventions() -> None:
    c = case()
    dd, td, tt = _kernels("train", "train"), _kernels("test", "train"), _kernels("test", "test")
    fn = gp_inference(dd, c.y)
    both = fn(None, td, tt)  # None: nngp and ntk, as a named tuple of Gaussians
    assert type(both).__name__ == "Gaussians" and both._fields == ("nngp", "ntk")
    pair = fn(("ntk", "nngp"), td)  # a tuple keeps its order; no k_test_test: means only
    assert pair._fields == ("ntk", "nngp") and pair.ntk.shape == (N_TEST, OUTPUTS)
    np.testing.assert_allclose(pair.ntk, both.ntk.mean, rtol=1e-12)
    assert fn("NNGP", td).shape == (N_TEST, OUTPUTS)  # a string: one value (case-insensitive)
    assert fn(("ntk",), td)._fields == ("ntk",)
    # the training set: N(y, 0)
    np.testing.assert_allclose(fn("ntk"), c.y)
    train = fn("nngp", None, True)
    np.testing.assert_allclose(train.mean, c.y)
    assert train.covariance.shape == (N_TRAIN, N_TRAIN) and not np.any(train.covariance)


def test_plain_arrays_are_one_kernel() -> None:
    c = case()
    dd, td, tt = _kernels("train", "train"), _kernels("test", "train"), _kernels("test", "test")
    out = gp_inference(dd.nngp, c.y)("nngp", td.nngp, tt.nngp)
    want = gp_inference(dd, c.y)("nngp", td, tt)
    np.testing.assert_allclose(out.mean, want.mean, rtol=1e-12)
    np.testing.assert_allclose(out.covariance, want.covariance, rtol=1e-12)


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize("t", [0.5, 4.0, 30.0])
def test_ensemble_matches_the_linear_map_of_the_prior(kind: str, t: float) -> None:
    c = case()
    lr = 1.5
    fn = gradient_descent_mse_ensemble(compiled().kernel_fn, c.x_train, c.y, learning_rate=lr)
    out = fn(t, c.x_test, kind, compute_cov=True)
    mean, cov = ensemble(
        _joint_prior(), c.block(kind, "train", "train"), c.block(kind, "test", "train"), c.y, lr * t
    )
    np.testing.assert_allclose(out.mean, mean, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-7, atol=1e-10)
    assert np.linalg.eigvalsh(np.asarray(out.covariance)).min() > -1e-10 * np.abs(cov).max()
    # the training set: the prior over the training points only
    train = fn(t, None, kind, compute_cov=True)
    mean, cov = ensemble(
        c.block("nngp", "train", "train"), c.block(kind, "train", "train"), None, c.y, lr * t
    )
    np.testing.assert_allclose(train.mean, mean, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(train.covariance, cov, rtol=1e-7, atol=1e-10)
    assert np.linalg.eigvalsh(np.asarray(train.covariance)).min() > -1e-10 * np.abs(cov).max()


def test_ensemble_at_t_zero_is_the_prior() -> None:
    c = case()
    fn = gradient_descent_mse_ensemble(compiled().kernel_fn, c.x_train, c.y)
    out = fn(0.0, c.x_test, None, compute_cov=True)
    for g in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(out, g).mean, 0.0, atol=1e-14)
        np.testing.assert_allclose(
            getattr(out, g).covariance, c.block("nngp", "test", "test"), rtol=1e-10, atol=1e-12
        )


def test_ensemble_at_infinity_is_gp_inference() -> None:
    c = case()
    fn = gradient_descent_mse_ensemble(compiled().kernel_fn, c.x_train, c.y, diag_reg=1e-4)
    dd, td, tt = _kernels("train", "train"), _kernels("test", "train"), _kernels("test", "test")
    want = gp_inference(dd, c.y, diag_reg=1e-4)(None, td, tt)
    got = fn(None, c.x_test, None, compute_cov=True)
    late = fn(1e10, c.x_test, None, compute_cov=True)
    for g in ("nngp", "ntk"):
        for field in ("mean", "covariance"):
            w = getattr(getattr(want, g), field)
            np.testing.assert_allclose(getattr(getattr(got, g), field), w, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(getattr(getattr(late, g), field), w, rtol=1e-6, atol=1e-9)


def test_ensemble_mean_is_gradient_descent_from_zero() -> None:
    c = case()
    kernel_fn = compiled().kernel_fn
    times = np.array([0.5, 2.0, 8.0])
    mean = gradient_descent_mse_ensemble(kernel_fn, c.x_train, c.y, diag_reg=0.01)(
        times, c.x_test, "ntk"
    )
    single = gradient_descent_mse(c.block("ntk", "train", "train"), c.y, diag_reg=0.01)(
        times, None, 0.0, c.block("ntk", "test", "train")
    )
    assert mean.shape == (3, N_TEST, OUTPUTS)
    np.testing.assert_allclose(mean, single, rtol=1e-10, atol=1e-12)


def test_ensemble_time_axes_and_get() -> None:
    c = case()
    fn = gradient_descent_mse_ensemble(compiled().kernel_fn, c.x_train, c.y)
    times = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = fn(times, c.x_test, ("ntk",), compute_cov=True)
    assert out._fields == ("ntk",)
    assert out.ntk.mean.shape == (3, 2, N_TEST, OUTPUTS)
    assert out.ntk.covariance.shape == (3, 2, N_TEST, N_TEST)
    one = fn(4.0, c.x_test, "ntk", compute_cov=True)
    np.testing.assert_allclose(out.ntk.mean[1, 1], one.mean, rtol=1e-12)
    np.testing.assert_allclose(out.ntk.covariance[1, 1], one.covariance, rtol=1e-12, atol=1e-14)
    train = fn(None, None, "nngp", compute_cov=True)  # t = ∞ on the training set: N(y, 0)
    np.testing.assert_allclose(train.mean, c.y)
    assert not np.any(train.covariance)


def test_ensemble_diag_reg_regularizes_the_train_kernel() -> None:
    c = case()
    reg = 0.05
    fn = gradient_descent_mse_ensemble(compiled().kernel_fn, c.x_train, c.y, diag_reg=reg)
    out = fn(3.0, c.x_test, "ntk")
    k_reg = regularize(c.block("ntk", "train", "train"), reg)
    mean, _ = ensemble(_joint_prior(), k_reg, c.block("ntk", "test", "train"), c.y, 3.0)
    np.testing.assert_allclose(out, mean, rtol=1e-8)


def test_neural_tangents_golden_values() -> None:
    # Printed by neural-tangents 0.6.5 (nt.predict, x64) for these inputs, 15 digits: the
    # conventions (loss normalisation, time units, diag_reg scale, the NTK covariance) agree.
    x = np.array([0.0, 0.4, 1.1, 1.5, 2.3, 0.7])  # 4 train, 2 test
    d2 = (x[:, None] - x[None, :]) ** 2
    nngp, ntk = np.exp(-d2 / 2) + 0.1, 2 * np.exp(-d2 / 0.98) + 0.3
    y = np.array([[1.0, -1.0], [0.5, 0.0], [-0.5, 1.0], [2.0, 0.5]])
    f0 = np.array([[0.1, 0.2], [-0.3, 0.0], [0.05, -0.1], [0.2, 0.3]])
    g0 = np.array([[0.4, -0.2], [0.0, 0.1]])
    tr, te = slice(0, 4), slice(4, 6)
    dd, td, tt = (Kernels(nngp[a, b], ntk[a, b]) for a, b in [(tr, tr), (te, tr), (te, te)])

    _, test = gradient_descent_mse(dd.ntk, y, learning_rate=0.5, diag_reg=0.01)(
        np.array([0.5, 3.0]), f0, g0, td.ntk
    )
    np.testing.assert_allclose(
        test,
        [
            [[0.474405050446124, -0.178711643301878], [0.12304516288549, 0.119082124951214]],
            [[0.732373636057779, -0.111355790887785], [0.452544409994232, 0.188562386844044]],
        ],
        rtol=1e-12,
    )
    g = gp_inference(dd, y, diag_reg=1e-3)("ntk", td, tt)
    np.testing.assert_allclose(
        g.mean,
        [[4.151763464490519, -0.317756058775801], [-0.50635789225028, 0.720309277768554]],
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        g.covariance,
        [[0.274340914214866, 0.0078114697133], [0.0078114697133, 0.000449657196673]],
        rtol=1e-8,
    )

    def kernel_fn(x1: np.ndarray, x2: np.ndarray | None, get: object) -> object:
        i1 = np.asarray(x1, int)
        i2 = i1 if x2 is None else np.asarray(x2, int)
        vals = {"nngp": nngp[np.ix_(i1, i2)], "ntk": ntk[np.ix_(i1, i2)]}
        return vals[get] if isinstance(get, str) else Kernels(vals["nngp"], vals["ntk"])

    e = gradient_descent_mse_ensemble(kernel_fn, np.arange(4), y, learning_rate=2.0)(
        2.0, np.arange(4, 6), "ntk", True
    )
    np.testing.assert_allclose(
        e.mean,
        [[0.689219734939427, 0.214517942034736], [0.490202824548037, 0.224214539762569]],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        e.covariance,
        [[0.632046173369878, -0.073441963203486], [-0.073441963203486, 0.030049797227633]],
        rtol=1e-12,
    )
