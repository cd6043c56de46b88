"""Gaussian-process inference with NNGP / NTK kernels: `tpcompile.predict.gp_inference`.

Part of `tpcompile.predict` (DESIGN §5: predict/ sits on top of `kernel_fn` and uses nothing
else of tpcompile). Same name, arguments and results as neural-tangents' `nt.predict.gp_inference`
(`neural_tangents/_src/predict.py`), for tpcompile's (N1, N2) kernels:

    predict_fn = gp_inference(k_train_train, y_train, diag_reg=0.0)
    predict_fn(get, k_test_train, k_test_test=None)

* "nngp": the posterior of the infinitely wide Bayesian network, mean K_td K⁻¹ y and covariance
  K_tt − K_td K⁻¹ K_dt;
* "ntk": the distribution of the infinite ensemble of infinitely wide networks trained by gradient
  flow to t = ∞ (Lee et al. 2019), mean Θ_td Θ⁻¹ y and covariance
  K_tt + Θ_td Θ⁻¹ K Θ⁻¹ Θ_dt − (Θ_td Θ⁻¹ K_dt + transpose) — it needs the NNGP kernels as well;
* "ntkgp": the GP with the NTK as covariance, Θ_tt − Θ_td Θ⁻¹ Θ_dt.

K is the train-train kernel plus the `diag_reg` regularizer (see `linalg.py`). The kernels may be
arrays or the named tuples kernel_fn returns. Results are JAX arrays in the kernels' dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tpcompile.predict.arrays import (
    PredictInputError,
    as_kernel,
    as_targets,
    canonical_get,
    check_scalar,
    check_trace_axes,
    first_kernel,
    has_kernel,
    kernel_of,
    pack,
)
from tpcompile.predict.linalg import Cholesky, regularize

GP_KERNELS = ("nngp", "ntk", "ntkgp")


class Gaussian(NamedTuple):
    """A normal distribution: mean (the shape of the outputs) and covariance (the shape of the
    kernel: (m, m) over the m test examples, shared by every output)."""

    mean: jax.Array
    covariance: jax.Array


def _name(k: Any, what: str, g: str) -> str:
    return what if isinstance(k, np.ndarray | jax.Array) else f"{what}.{g}"


class TrainKernels:
    """The train-train kernels (checked once each), their regularized Cholesky factorizations and
    K⁻¹ y, each computed on first use."""

    def __init__(
        self,
        k_train_train: Any,
        y_train: Any,
        diag_reg: float,
        diag_reg_absolute_scale: bool,
        trace_axes: Any = (-1,),
    ) -> None:
        first = as_kernel(first_kernel(k_train_train, "k_train_train"), "k_train_train", None, None)
        self.n = first.shape[0]
        if first.shape != (self.n, self.n):
            raise PredictInputError(
                f"k_train_train has shape {tuple(first.shape)}, expected a square (N, N) matrix",
                hint="use kernel_fn(x_train, None)",
            )
        self.dtype = first.dtype
        self.y = as_targets(y_train, self.n, self.dtype)
        check_trace_axes(trace_axes, self.y)
        self.raw = k_train_train
        self.diag_reg = check_scalar(diag_reg, "diag_reg")
        self.absolute = bool(diag_reg_absolute_scale)
        self._kernels: dict[str, jax.Array] = {}
        self._solvers: dict[str, Cholesky] = {}
        self._alphas: dict[str, jax.Array] = {}

    def kernel(self, g: str) -> jax.Array:
        """The `g` train-train kernel, unregularized."""
        if g not in self._kernels:
            name = _name(self.raw, "k_train_train", g)
            self._kernels[g] = as_kernel(
                kernel_of(self.raw, g, "k_train_train"), name, self.n, self.n, dtype=self.dtype
            )
        return self._kernels[g]

    def regularized(self, g: str) -> jax.Array:
        return regularize(self.kernel(g), self.diag_reg, self.absolute)

    def solver(self, g: str) -> Cholesky:
        if g not in self._solvers:
            what = _name(self.raw, "k_train_train", g) + (" + diag_reg" if self.diag_reg else "")
            self._solvers[g] = Cholesky(self.regularized(g), what)
        return self._solvers[g]

    def alpha(self, g: str) -> jax.Array:
        """K⁻¹ y, shape (n,) or (n, k)."""
        if g not in self._alphas:
            self._alphas[g] = self.solver(g).solve(self.y)
        return self._alphas[g]


def other_kernel(k: Any, g: str, what: str, rows: int | None, cols: int, dtype: Any) -> jax.Array:
    """The `g` kernel of a test-train (rows None) or test-test kernel argument, checked."""
    return as_kernel(kernel_of(k, g, what), _name(k, what, g), rows, cols, dtype=dtype)


def gp_inference(
    k_train_train: Any,
    y_train: Any,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Any = (-1,),
) -> Callable[..., Any]:
    """The GP posterior (NNGP), infinite-time ensemble (NTK) or NTK-GP predictions on test sets.

    k_train_train: the (n, n) train-train kernel, an array or kernel_fn's named tuple (with the
      kernels `predict_fn` will need); y_train: targets of shape (n, k) (or (n,): one output);
      diag_reg: regularizer strength, relative to the mean diagonal of the kernel unless
      diag_reg_absolute_scale; trace_axes: (-1,) only (tpcompile kernels have no output axes).

    Returns `predict_fn(get=None, k_test_train=None, k_test_test=None)`: for each kernel in
    `get` ("nngp", "ntk", "ntkgp", a tuple of them, None for ("nngp", "ntk")) the mean (m, k)
    on the test set, or a `Gaussian(mean, covariance)` when k_test_test (m, m) is given. A
    string `get` returns that one value, a tuple a named tuple `Gaussians`. k_test_train=None
    means the training set, where the result is N(y_train, 0) (pass any k_test_test, e.g. True,
    for the zero covariance). The NTK covariance needs the NNGP too: named tuples with both.
    Cholesky factorizations are computed on first use and cached.
    """
    train = TrainKernels(k_train_train, y_train, diag_reg, diag_reg_absolute_scale, trace_axes)

    def predict_fn(
        get: str | Sequence[str] | None = None, k_test_train: Any = None, k_test_test: Any = None
    ) -> Any:
        single, fields = canonical_get(get, GP_KERNELS)
        return pack(
            {g: posterior(train, g, k_test_train, k_test_test) for g in fields}, single, fields
        )

    return predict_fn


def posterior(train: TrainKernels, g: str, k_test_train: Any, k_test_test: Any) -> Any:
    """The mean, or Gaussian, of one kernel `g` (see gp_inference)."""
    kind = "ntk" if g == "ntkgp" else g
    k_dd = train.kernel(kind)
    if k_test_train is None:  # the training set: N(y_train, 0)
        mean = train.y
        return mean if k_test_test is None else Gaussian(mean, jnp.zeros_like(k_dd))
    k_td = other_kernel(k_test_train, kind, "k_test_train", None, train.n, train.dtype)
    mean = k_td @ train.alpha(kind)
    if k_test_test is None:
        return mean
    m = k_td.shape[0]
    if g == "ntk" and not (has_kernel(train.raw, "nngp") and has_kernel(k_test_train, "nngp")):
        raise PredictInputError(
            "the NTK posterior covariance needs the NNGP kernels too",
            hint="pass k_train_train and k_test_train as kernel_fn(..., get=('nngp', 'ntk'))",
        )
    prior = "ntk" if g == "ntkgp" else "nngp"  # the kernel of the network at initialisation
    k_td_prior = other_kernel(k_test_train, prior, "k_test_train", m, train.n, train.dtype)
    k_tt = other_kernel(k_test_test, prior, "k_test_test", m, m, train.dtype)
    solver = train.solver(kind)
    if g in ("nngp", "ntkgp"):
        return Gaussian(mean, k_tt - k_td @ solver.solve(k_td_prior.T))
    # ntk: K_tt + Θ_td Θ⁻¹ K Θ⁻¹ Θ_dt − (Θ_td Θ⁻¹ K_dt + transpose)
    a = solver.solve(k_td.T)  # Θ⁻¹ Θ_dt, (n, m)
    cross = k_td @ solver.solve(k_td_prior.T)
    cov = k_tt + a.T @ (train.kernel("nngp") @ a) - cross - cross.T
    return Gaussian(mean, cov)
