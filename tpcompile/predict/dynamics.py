"""Gradient-flow training dynamics of wide networks: `gradient_descent_mse` and
`gradient_descent_mse_ensemble` of `tpcompile.predict`.

Part of `tpcompile.predict` (DESIGN §5: on top of `kernel_fn`, nothing else of tpcompile). Same
names, arguments and results as neural-tangents' `nt.predict` (`neural_tangents/_src/predict.py`),
for tpcompile's (N1, N2) kernels. With the loss ½·mean((f − y)²) over the m = y_train.size
entries of y, a network linearised around its initialisation (exact at infinite width, Lee et al.
2019) follows df/dt = −η Θ (f − y) / m, so with K = Θ_train,train (+ diag_reg) = V Λ Vᵀ and τ = ηt,

    f_train(t) = y + e^{−Kτ/m} (f_train(0) − y)
    f_test(t)  = f_test(0) − Θ_td K⁻¹ (I − e^{−Kτ/m}) (f_train(0) − y).

Averaged over random initialisations (f(0) ~ GP(0, NNGP)), the ensemble is Gaussian with mean
Θ_td K⁻¹ (I − e^{−Kτ/m}) y and covariance that of the linear map f(0) ↦ f(t) applied to the prior:
Lee et al.'s formulas for NTK training, and with the NNGP in place of the NTK for training the
readout alone. Finite times use the eigendecomposition of K, t = None (∞) a Cholesky solve
(`linalg.py`); results are JAX arrays in the kernels' dtype, with leading time axes of the shape
of `t` when t is an array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tpcompile.predict.arrays import (
    KERNELS,
    PredictInputError,
    as_kernel,
    as_outputs,
    as_targets,
    as_times,
    canonical_get,
    check_scalar,
    check_trace_axes,
    pack,
)
from tpcompile.predict.gp import Gaussian, TrainKernels, posterior
from tpcompile.predict.linalg import (
    Cholesky,
    Eigen,
    eigen,
    learned,
    learned_over,
    regularize,
    remaining,
)


def _train_matrix(k: Any) -> jax.Array:
    if hasattr(k, "_fields"):
        raise PredictInputError(
            "k_train_train must be one (N, N) kernel matrix, got a named tuple",
            hint="pass kernel_fn(x_train, None, 'ntk') (or its .ntk field)",
        )
    k = as_kernel(k, "k_train_train", None, None)
    if k.shape[0] != k.shape[1]:
        raise PredictInputError(
            f"k_train_train has shape {tuple(k.shape)}, expected a square (N, N) matrix",
            hint="use kernel_fn(x_train, None, 'ntk')",
        )
    return k


def _in_time(coef: jax.Array, left: jax.Array, proj: jax.Array) -> jax.Array:
    """left · diag(coef[t]) · proj for every time t: (T, rows, *outputs)."""
    return jnp.einsum("ri,ti,i...->tr...", left, coef, proj)


class GradientFlow:
    """Gradient flow on ½·mean((f − y)²) with a fixed train-train kernel K (+ diag_reg): the
    factorizations, each computed on first use and kept (as neural-tangents does), and the
    quantities `gradient_descent_mse` and the estimators of `tpcompile.sklearn` need."""

    def __init__(
        self,
        k_train_train: Any,
        y_train: Any,
        learning_rate: float = 1.0,
        diag_reg: float = 0.0,
        diag_reg_absolute_scale: bool = False,
        trace_axes: Any = (-1,),
    ) -> None:
        self.k = _train_matrix(k_train_train)
        self.n, self.dtype = self.k.shape[0], self.k.dtype
        self.y = as_targets(y_train, self.n, self.dtype)
        check_trace_axes(trace_axes, self.y)
        self.lr = check_scalar(learning_rate, "learning_rate")
        self.reg = check_scalar(diag_reg, "diag_reg")
        self.absolute = bool(diag_reg_absolute_scale)
        self._factors: dict[str, Any] = {}

    def _factor(self, kind: str) -> Any:
        if kind not in self._factors:
            what = "k_train_train" + (" + diag_reg" if self.reg else "")
            k_reg = regularize(self.k, self.reg, self.absolute)
            self._factors[kind] = eigen(k_reg, what) if kind == "eigen" else Cholesky(k_reg, what)
        return self._factors[kind]

    def times(self, t: Any) -> jax.Array:
        """t · learning_rate, checked, in the kernel's dtype."""
        return as_times(t, self.dtype) * self.lr

    def dual(self, times: jax.Array | None, rhs: jax.Array) -> jax.Array:
        """A with f_test(t) − f_test(0) = k_test_train @ A when f_train(0) − y = −rhs:
        K⁻¹ rhs at t = ∞ (times None), else K⁻¹ (I − e^{−Kτ/m}) rhs for each time, (T, n, ...)."""
        if times is None:
            return self._factor("cholesky").solve(rhs)
        eig: Eigen = self._factor("eigen")
        gain = learned_over(eig.values, times, self.y.size)  # (1 − e^{-λτ/m}) / λ
        return _in_time(gain, eig.vectors, eig.vectors.T @ rhs)

    def train_change(self, times: jax.Array, rhs: jax.Array) -> jax.Array:
        """f_train(t) − f_train(0) = (I − e^{−Kτ/m}) rhs for each time, (T, n, ...)."""
        eig: Eigen = self._factor("eigen")
        return _in_time(learned(eig.values, times, self.y.size), eig.vectors, eig.vectors.T @ rhs)

    def mean_coefficients(self, t: Any = None) -> jax.Array:
        """A with the ensemble mean (f(0) = 0) at test inputs = k_test_train @ A, for one time t
        (None: ∞): the dual coefficients of the `tpcompile.sklearn` estimators."""
        if t is None:
            return self.dual(None, self.y)
        times = self.times(t)
        if times.ndim:
            raise PredictInputError("mean_coefficients takes one time t, not an array")
        return self.dual(times.reshape(1), self.y)[0]


def gradient_descent_mse(
    k_train_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Any = (-1,),
) -> Callable[..., Any]:
    """Outputs of a network trained by gradient flow on ½·mean((f − y)²), from its NTK.

    k_train_train: the (n, n) NTK (an array); y_train: (n, k) (or (n,)); the time unit is
    1/learning_rate; diag_reg as in `gp_inference`; trace_axes: (-1,) only.

    Returns `predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None)`: t a scalar
    or an array of times (results get leading axes of t's shape), None for t = ∞;
    fx_train_0 / fx_test_0 the outputs at t = 0 (broadcast to (n, k) / (m, k); None: not
    wanted, fx_train_0=None still trains from 0), k_test_train (m, n) needed with fx_test_0.
    Returns fx_train_t, or fx_test_t when fx_train_0 is None, or (fx_train_t, fx_test_t). At
    t = None the training outputs are y_train exactly (unregularized, as neural-tangents).
    """
    flow = GradientFlow(
        k_train_train, y_train, learning_rate, diag_reg, diag_reg_absolute_scale, trace_axes
    )
    y, n, dtype = flow.y, flow.n, flow.dtype

    def predict_fn(
        t: Any = None, fx_train_0: Any = 0.0, fx_test_0: Any = None, k_test_train: Any = None
    ) -> Any:
        if fx_train_0 is None and fx_test_0 is None:
            raise PredictInputError(
                "fx_train_0 and fx_test_0 are both None: nothing to predict",
                hint="give the initial outputs of the network (or 0.)",
            )
        if fx_test_0 is not None and k_test_train is None:
            raise PredictInputError(
                "test predictions (fx_test_0) need k_test_train",
                hint="pass k_test_train=kernel_fn(x_test, x_train, 'ntk')",
            )
        f_train = (
            None if fx_train_0 is None else as_outputs(fx_train_0, y.shape, "fx_train_0", dtype)
        )
        f_test = k_td = None
        if fx_test_0 is not None:
            k_td = as_kernel(k_test_train, "k_test_train", None, n, dtype=dtype)
            f_test = as_outputs(fx_test_0, (k_td.shape[0], *y.shape[1:]), "fx_test_0", dtype)
        rhs = y if f_train is None else y - f_train

        if t is None:  # t = ∞: the training outputs reach y; test outputs by a Cholesky solve
            train_t = y
            test_t = None if f_test is None else f_test + k_td @ flow.dual(None, rhs)
        else:
            times = flow.times(t)
            flat = times.reshape(-1)
            train_t = test_t = None
            if f_train is not None:
                train_t = f_train + flow.train_change(flat, rhs).reshape(times.shape + y.shape)
            if f_test is not None:
                change = jnp.einsum("mn,tn...->tm...", k_td, flow.dual(flat, rhs))
                test_t = f_test + change.reshape(times.shape + f_test.shape)
        if f_test is None:
            return train_t
        return test_t if f_train is None else (train_t, test_t)

    return predict_fn


class _TrainTrain:
    """kernel_fn(x_train, None, g) for the kernels asked for so far, each computed once (the
    missing ones in one call); read through the attributes `nngp` and `ntk` (None if absent)."""

    def __init__(self, kernel_fn: Callable[..., Any], x_train: Any, kwargs: dict[str, Any]) -> None:
        self.kernel_fn, self.x_train, self.kwargs = kernel_fn, x_train, kwargs
        self.values: dict[str, Any] = {}

    def need(self, kinds: Sequence[str]) -> None:
        missing = tuple(g for g in KERNELS if g in kinds and g not in self.values)
        if len(missing) == 1:
            self.values[missing[0]] = self.kernel_fn(self.x_train, None, missing[0], **self.kwargs)
        elif missing:
            out = self.kernel_fn(self.x_train, None, missing, **self.kwargs)
            self.values.update({g: getattr(out, g) for g in missing})

    @property
    def nngp(self) -> Any:
        return self.values.get("nngp")

    @property
    def ntk(self) -> Any:
        return self.values.get("ntk")


class _Pair:
    """Test kernels as a named-tuple-like object (fields nngp, ntk, None if not computed)."""

    def __init__(self, out: Any, kinds: tuple[str, ...]) -> None:
        self.nngp = self.ntk = None
        for g in kinds:
            setattr(self, g, out if len(kinds) == 1 else getattr(out, g))


def gradient_descent_mse_ensemble(
    kernel_fn: Callable[..., Any],
    x_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Any = (-1,),
    **kernel_fn_train_train_kwargs: Any,
) -> Callable[..., Any]:
    """Mean and covariance, over random initialisations, of infinitely wide networks trained by
    gradient flow on ½·mean((f − y)²) for time t (Lee et al. 2019).

    kernel_fn: `Compiled.kernel_fn` (or any function with its call shape); x_train (n, ...);
    y_train (n, k) (or (n,)); learning_rate, diag_reg, diag_reg_absolute_scale as in
    `gradient_descent_mse`; extra keyword arguments go to every kernel_fn call.

    Returns `predict_fn(t=None, x_test=None, get=None, compute_cov=False, **kwargs)`: for each
    kernel in `get` ("nngp": train the readout only, "ntk": train every weight; a tuple; None
    for both) the mean (*t.shape, m, k), or `Gaussian(mean, covariance)` with covariance
    (*t.shape, m, m) when compute_cov. x_test=None means the training set (where t = ∞ gives
    N(y_train, 0), unregularized). A string `get` returns one value, otherwise a named tuple
    `Gaussians`. Kernels and factorizations of the training set are computed once and kept.
    """
    if not callable(kernel_fn):
        raise PredictInputError("kernel_fn must be callable, e.g. tpcompile.compile(src).kernel_fn")
    n = int(np.shape(x_train)[0]) if np.ndim(x_train) else 0
    # shapes checked now; y is cast to the kernels' dtype once they are computed
    check_trace_axes(trace_axes, as_targets(y_train, n, None))
    lr = check_scalar(learning_rate, "learning_rate")
    reg = check_scalar(diag_reg, "diag_reg")
    cache = _TrainTrain(kernel_fn, x_train, dict(kernel_fn_train_train_kwargs))
    state: dict[str, Any] = {}

    def train_kernels(kinds: tuple[str, ...]) -> TrainKernels:
        cache.need(kinds)
        if "train" not in state:
            state["train"] = TrainKernels(cache, y_train, reg, diag_reg_absolute_scale)
        return state["train"]

    def eig(train: TrainKernels, g: str) -> Eigen:
        if g not in state:
            what = f"kernel_fn(x_train, None, {g!r})" + (" + diag_reg" if reg else "")
            state[g] = eigen(train.regularized(g), what)
        return state[g]

    def predict_fn(
        t: Any = None,
        x_test: Any = None,
        get: str | Sequence[str] | None = None,
        compute_cov: bool = False,
        **kernel_fn_test_test_kwargs: Any,
    ) -> Any:
        single, fields = canonical_get(get, KERNELS)
        kinds = tuple(g for g in KERNELS if g in fields or (g == "nngp" and compute_cov))
        train = train_kernels(kinds)
        k_td: _Pair | None = None
        nngp_tt: Any = True if compute_cov else None  # x_test=None: N(y_train, 0) at t = ∞
        if x_test is not None:
            kwargs = {**kernel_fn_train_train_kwargs, **kernel_fn_test_test_kwargs}
            k_td = _Pair(
                kernel_fn(x_test, x_train, kinds[0] if len(kinds) == 1 else kinds, **kwargs), kinds
            )
            nngp_tt = kernel_fn(x_test, None, "nngp", **kwargs) if compute_cov else None
        if t is None:
            values = {g: posterior(train, g, k_td, nngp_tt) for g in fields}
        else:
            times = as_times(t, train.dtype) * lr
            values = {
                g: _ensemble_at(
                    train,
                    eig(train, g),
                    g,
                    times,
                    k_td,
                    nngp_tt if x_test is not None else None,
                    compute_cov,
                )
                for g in fields
            }
        return pack(values, single, fields)

    return predict_fn


def _ensemble_at(
    train: TrainKernels,
    eig: Eigen,
    g: str,
    times: jax.Array,
    k_td: Any,
    nngp_tt: Any,
    compute_cov: bool,
) -> Any:
    """The ensemble's mean (and covariance) for kernel g at finite times (see the docstring of
    the module; the formulas are neural-tangents')."""
    flat, m = times.reshape(-1), train.y.size
    lam, v = eig.values, eig.vectors
    proj = v.T @ train.y
    if k_td is None:  # the training set
        mean = _in_time(learned(lam, flat, m), v, proj)
        rows = train.n
    else:
        kv = (
            as_kernel(
                getattr(k_td, g),
                f"kernel_fn(x_test, x_train, {g!r})",
                None,
                train.n,
                dtype=train.dtype,
            )
            @ v
        )
        gain = learned_over(lam, flat, m)  # (1 − e^{-λτ/m}) / λ
        mean = _in_time(gain, kv, proj)
        rows = kv.shape[0]
    mean = mean.reshape(times.shape + (rows,) + train.y.shape[1:])
    if not compute_cov:
        return mean
    k_nngp = train.kernel("nngp")  # the prior covariance of the outputs (unregularized)
    if k_td is None:
        if g == "nngp":  # K e^{-2Kτ/m}
            cov = _in_time(jnp.maximum(lam, 0) * remaining(lam, 2 * flat, m), v, v.T)
        else:  # e^{-Θτ/m} K e^{-Θτ/m}
            decay = _in_time(remaining(lam, flat, m), v, v.T)
            cov = decay @ k_nngp @ decay
    else:
        k_tt = as_kernel(nngp_tt, "kernel_fn(x_test, None, 'nngp')", rows, rows, dtype=train.dtype)[
            None
        ]
        if g == "nngp":  # K_tt − K_td K⁻¹ (I − e^{-2Kτ/m}) K_dt
            cov = k_tt - _in_time(learned_over(lam, 2 * flat, m), kv, kv.T)
        else:  # K_tt + A K Aᵀ − (A K_dt + transpose), A = Θ_td Θ⁻¹ (I − e^{-Θτ/m})
            a = _in_time(gain, kv, v.T)  # (T, m, n)
            k_dt = as_kernel(
                k_td.nngp, "kernel_fn(x_test, x_train, 'nngp')", rows, train.n, dtype=train.dtype
            ).T
            cross = a @ k_dt
            cov = k_tt + a @ k_nngp @ jnp.swapaxes(a, 1, 2) - cross - jnp.swapaxes(cross, 1, 2)
    return Gaussian(mean, cov.reshape(times.shape + (rows, rows)))
