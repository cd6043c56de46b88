"""Independent NumPy/SciPy references for `tpcompile.predict`, and the kernels the predict tests
share (tests/test_predict_*.py).

The references are written from the mathematics, not from tpcompile's code or neural-tangents'
arrangement of it: gradient flow on L = ½·mean((f − y)²) over the m = y.size entries of y is the
linear ODE df/dt = −η Θ (f − y) / m, solved with a matrix exponential (`scipy.linalg.expm`, a
Padé approximant — no eigendecomposition) and linear solves; the ensemble over initialisations is
the covariance of a linear map of the Gaussian prior (f_test(0), f_train(0)) ~ N(0, NNGP).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.linalg

import tpcompile

MLP = Path(__file__).resolve().parent.parent.joinpath("examples", "mlp.tp").read_text()

N_TRAIN, N_TEST, DIM, OUTPUTS = 10, 6, 4, 3


class Case(NamedTuple):
    """Kernels of the MLP on N_TRAIN + N_TEST random points, split, plus targets and outputs."""

    x_train: np.ndarray
    x_test: np.ndarray
    nngp: np.ndarray  # (N_TRAIN + N_TEST) square, train first
    ntk: np.ndarray
    y: np.ndarray  # (N_TRAIN, OUTPUTS)
    f0: np.ndarray  # (N_TRAIN, OUTPUTS) outputs at t = 0
    g0: np.ndarray  # (N_TEST, OUTPUTS)

    def block(self, kind: str, rows: str, cols: str) -> np.ndarray:
        k = getattr(self, kind)
        pick = {"train": slice(0, N_TRAIN), "test": slice(N_TRAIN, None)}
        return k[pick[rows], pick[cols]]


@functools.cache
def compiled() -> tpcompile.Compiled:
    return tpcompile.compile(MLP, params={"L": 2})


@functools.cache
def case() -> Case:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM))
    k = compiled().kernel_fn(x, None)  # one call, one shape: the kernels of every test
    return Case(
        x[:N_TRAIN],
        x[N_TRAIN:],
        np.asarray(k.nngp),
        np.asarray(k.ntk),
        rng.normal(size=(N_TRAIN, OUTPUTS)),
        rng.normal(size=(N_TRAIN, OUTPUTS)),
        rng.normal(size=(N_TEST, OUTPUTS)),
    )


def regularize(k: np.ndarray, diag_reg: float, absolute: bool = False) -> np.ndarray:
    n = k.shape[0]
    return k + (diag_reg if absolute else diag_reg * np.trace(k) / n) * np.eye(n)


def flow_matrix(k_reg: np.ndarray, tau: float, m: int) -> np.ndarray:
    """exp(−K τ / m), the propagator of df/dt = −K (f − y) / m over time τ."""
    return scipy.linalg.expm(-k_reg * tau / m)


def gd_mse(
    k_dd: np.ndarray,
    y: np.ndarray,
    tau: float | None,
    f0: np.ndarray,
    g0: np.ndarray | None = None,
    k_td: np.ndarray | None = None,
    diag_reg: float = 0.0,
    absolute: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(f_train(τ), f_test(τ)) of gradient flow from (f0, g0); τ = learning_rate · t, None = ∞.

    f_train − y obeys a linear ODE: f_train(τ) = y + e^{−Kτ/m}(f0 − y). The test outputs move by
    Θ_td times the integral of the residual: ∫ −Θ_td (f_train − y)/m = −Θ_td K⁻¹(I − e^{−Kτ/m})
    (f0 − y). At τ = ∞, f_train = y (neural-tangents' convention, regularized or not)."""
    k_reg, m = regularize(k_dd, diag_reg, absolute), y.size
    if tau is None:
        train, learned = y.astype(float), np.eye(len(y))
    else:
        decay = flow_matrix(k_reg, tau, m)
        train, learned = y + decay @ (f0 - y), np.eye(len(y)) - decay
    test = None
    if k_td is not None:
        test = g0 + k_td @ np.linalg.solve(k_reg, learned @ (y - f0))
    return train, test


def integrate(
    k_all: np.ndarray, y: np.ndarray, tau: float, f0: np.ndarray, g0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The same flow by numerical integration of df_all/dt = −Θ_all,train (f_train − y)/m for the
    train and test outputs together (scipy's RK45), as a check of the conventions alone."""
    from scipy.integrate import solve_ivp

    n, m = len(y), y.size

    def rhs(_: float, z: np.ndarray) -> np.ndarray:
        f = z.reshape(len(k_all), -1)
        return (-k_all[:, :n] @ (f[:n] - y) / m).ravel()

    z0 = np.concatenate([f0, g0]).ravel()
    sol = solve_ivp(rhs, (0.0, tau), z0, rtol=1e-11, atol=1e-12, method="DOP853")
    z = sol.y[:, -1].reshape(len(k_all), -1)
    return z[:n], z[n:]


def gp_posterior(
    k_dd: np.ndarray, k_td: np.ndarray, k_tt: np.ndarray, y: np.ndarray, diag_reg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The textbook GP posterior: K_td K⁻¹ y and K_tt − K_td K⁻¹ K_dt (K regularized)."""
    k = regularize(k_dd, diag_reg)
    return k_td @ np.linalg.solve(k, y), k_tt - k_td @ np.linalg.solve(k, k_td.T)


def ensemble(
    nngp: np.ndarray,
    train_kernel: np.ndarray,
    test_kernel: np.ndarray | None,
    y: np.ndarray,
    tau: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance over f(0) ~ N(0, nngp) of the outputs trained with `train_kernel`
    (n, n) for time τ (None: ∞), at the test points (test_kernel (m, n)) or, if None, the train
    points. `nngp` is the prior over (test, train) or over train only.

    The trained outputs are a linear map of the prior outputs: f(τ) = A y + B f(0) (see gd_mse),
    so mean = A y and covariance = B nngp Bᵀ — no closed form of the result is used."""
    n, m = len(y), y.size
    learned = np.eye(n) if tau is None else np.eye(n) - flow_matrix(train_kernel, tau, m)
    if test_kernel is None:  # f_train(τ) = learned y + (I − learned) f0
        a, b = learned, np.eye(n) - learned
    else:  # f_test(τ) = g0 + G (y − f0), G = Θ_td Θ⁻¹ learned
        g = test_kernel @ np.linalg.solve(train_kernel, learned)
        a, b = g, np.hstack([np.eye(len(test_kernel)), -g])
    return a @ y, b @ nngp @ b.T
