"""scikit-learn estimators on tpcompile kernels: `NTKRegressor`, `NNGPRegressor`, `NTKClassifier`.

The top of the stack (DESIGN §5): built on `tpcompile.predict`, which is built on `kernel_fn`.
scikit-learn is an optional extra (`pip install tpcompile[sklearn]`).

    from tpcompile.sklearn import NTKClassifier
    clf = NTKClassifier("examples/mlp.tp", params={"L": 3}).fit(X_train, y_train)
    clf.score(X_test, y_test)

Each estimator predicts the mean, over random initialisations, of the infinitely wide network of
`program` trained by gradient flow on ½·mean((f − y)²) for time `t` (None: t = ∞) —
`tpcompile.predict.gradient_descent_mse_ensemble`'s mean, computed from the `kernel` ("ntk":
every weight trained; "nngp": the readout alone, at t = ∞ the NNGP posterior mean). Since the
mean is linear in the test-train kernel, `fit` stores dual coefficients A = K⁻¹(I − e^{−Kt/m})Y
(K the train-train kernel + diag_reg) and `predict` is kernel_fn(X, X_fit_) @ A.

* `program`: `.tp` source text, or the path of a `.tp` file (a Path, or a one-line str ending
  in `.tp`; a missing file is a FileNotFoundError); `params` overrides its `param`s. It is
  compiled at `fit` (compilations are cached by text and params), never in the constructor;
  the input dimension d is taken from X.
* X is (n, d) for a program with `input x`, (n, T, d) for `input x[1..T]`.
* `diag_reg` (relative to the mean diagonal, neural-tangents' convention) defaults to 1e-6:
  negligible for a well-conditioned kernel, and it keeps the t = ∞ solve defined when training
  rows repeat (a singular kernel). 0 interpolates exactly.
* The classifier regresses centred one-hot targets (1 − 1/C for the class, −1/C elsewhere: the
  zero-mean encoding of the NNGP/NTK literature, 0.9 / −0.1 for 10 classes) and predicts the
  argmax. The argmax is the same for any targets a·onehot + b
  (a > 0): the mean is linear in the targets and b·1 adds the same value to every class of a
  test point. Centring only makes `decision_function` values symmetric around 0.

Everything is computed in float64 (inside `jax.enable_x64(True)`, whatever the global setting):
scikit-learn works in float64, and an NTK's condition number is often beyond float32.
Results are NumPy arrays.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised without scikit-learn installed
    raise ImportError(
        "tpcompile.sklearn needs scikit-learn (>= 1.6): pip install tpcompile[sklearn]"
    ) from exc

import jax
import numpy as np

import tpcompile
from tpcompile.predict.dynamics import GradientFlow

__all__ = ["NNGPRegressor", "NTKClassifier", "NTKRegressor"]

KERNELS = ("ntk", "nngp")


def _float64() -> Any:
    """A context computing in float64 (`jax.enable_x64`, `jax.experimental` before JAX 0.4.36)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # pragma: no cover - older JAX
        from jax.experimental import enable_x64 as enable
    return enable(True)


def program_text(program: Any) -> tuple[str, str]:
    """(source text, file name) of `program`: the file's text if it is a path (a Path, or a
    one-line str ending in `.tp`), else `program` itself as source text."""
    if isinstance(program, os.PathLike) or (
        isinstance(program, str) and program.rstrip().endswith(".tp") and "\n" not in program
    ):
        path = os.fspath(program).strip()
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no such .tp file: {path!r} (program is the path of a .tp "
                "file or the program's source text)"
            )
        with open(path, encoding="utf-8") as fh:
            return fh.read(), path
    if not isinstance(program, str):
        raise TypeError(f"program must be .tp source text or a path, got {type(program).__name__}")
    return program, "<string>"


@functools.lru_cache(maxsize=32)
def _compile_cached(text: str, params: tuple[tuple[str, Any], ...], filename: str) -> Any:
    return tpcompile.compile(text, dict(params) or None, filename)


def compile_program(program: Any, params: Mapping[str, Any] | None) -> Any:
    """`tpcompile.compile` of the program, cached by (text, params): a grid search or
    cross-validation compiles each program once."""
    text, filename = program_text(program)
    items = tuple(sorted((params or {}).items()))
    try:
        hash(items)
    except TypeError:
        return tpcompile.compile(text, dict(params or {}) or None, filename)
    return _compile_cached(text, items, filename)


def _non_negative(value: Any) -> bool:
    """A real number >= 0 (+inf allowed: t = inf is t = None computed by eigendecomposition)."""
    try:
        return bool(np.isscalar(value) and not isinstance(value, str) and float(value) >= 0)
    except (TypeError, ValueError):
        return False


class _KernelMean(BaseEstimator):
    """The shared machinery: checks, compilation, dual coefficients, the mean at test inputs."""

    def __init__(
        self,
        program: Any,
        params: Mapping[str, Any] | None = None,
        t: float | None = None,
        diag_reg: float = 1e-6,
        kernel: str = "ntk",
    ) -> None:
        self.program = program
        self.params = params
        self.t = t
        self.diag_reg = diag_reg
        self.kernel = kernel

    def _check_options(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be 'ntk' or 'nngp', got {self.kernel!r}")
        if self.t is not None and not _non_negative(self.t):
            raise ValueError(f"t must be None (t = infinity) or a number >= 0, got {self.t!r}")
        if not _non_negative(self.diag_reg):
            raise ValueError(f"diag_reg must be a finite number >= 0, got {self.diag_reg!r}")

    def _fit_targets(self, X: Any, Y: np.ndarray) -> None:
        """Compile, compute the train-train kernel and the dual coefficients for targets Y."""
        self.compiled_ = compile_program(self.program, self.params)
        with _float64():
            k_dd = self.compiled_.kernel_fn(X, None, self.kernel)
            coef = GradientFlow(k_dd, Y, diag_reg=self.diag_reg).mean_coefficients(self.t)
        self.X_fit_ = X
        self.dual_coef_ = np.asarray(coef, dtype=np.float64)

    def _mean(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=np.float64)
        with _float64():
            k_td = np.asarray(self.compiled_.kernel_fn(X, self.X_fit_, self.kernel))
        return k_td @ self.dual_coef_


class NTKRegressor(RegressorMixin, _KernelMean):
    """The mean prediction of the infinite ensemble of infinitely wide `program` networks
    trained for time `t` (None: ∞) with the `kernel` ("ntk" or "nngp"); see the module docstring.

    Fitted attributes: `compiled_` (the `tpcompile.Compiled`), `X_fit_`, `dual_coef_` (n,) or
    (n, k), `n_features_in_`.
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> NTKRegressor:
        self._check_options()
        X, y = validate_data(
            self, X, y, allow_nd=True, dtype=np.float64, multi_output=True, y_numeric=True
        )
        self._fit_targets(X, np.asarray(y, dtype=np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The ensemble's mean at X: (m,) or (m, k), as y was at fit."""
        return self._mean(X)


class NNGPRegressor(NTKRegressor):
    """`NTKRegressor` with kernel="nngp" by default: at t = ∞ the posterior mean of the
    infinitely wide Bayesian network (the NNGP), at finite t the readout-only training mean."""

    def __init__(
        self,
        program: Any,
        params: Mapping[str, Any] | None = None,
        t: float | None = None,
        diag_reg: float = 1e-6,
        kernel: str = "nngp",
    ) -> None:
        super().__init__(program, params=params, t=t, diag_reg=diag_reg, kernel=kernel)


class NTKClassifier(ClassifierMixin, _KernelMean):
    """Classification by the infinite ensemble's mean regression on centred one-hot targets;
    the predicted class is the argmax (see the module docstring).

    Fitted attributes: `classes_`, `compiled_`, `X_fit_`, `dual_coef_` (n, C), `n_features_in_`.
    """

    def fit(self, X: Any, y: Any) -> NTKClassifier:
        self._check_options()
        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        targets = np.eye(n_classes)[codes] - 1.0 / n_classes
        self._fit_targets(X, targets)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The ensemble's mean outputs, (m, C); for two classes the margin f₁ − f₀, (m,)."""
        f = self._mean(X)
        return f[:, 1] - f[:, 0] if len(self.classes_) == 2 else f

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest mean output."""
        f = self._mean(X)
        return self.classes_[np.argmax(f, axis=1)]
