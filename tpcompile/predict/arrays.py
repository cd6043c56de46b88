"""Checked inputs and shaped outputs for `tpcompile.predict` (the layer above `kernel_fn`).

Every public function of `tpcompile.predict` turns its arrays into JAX arrays here, once, with
one message per mistake (`PredictInputError`, a `KernelInputError` that is also a `ValueError`,
as neural-tangents raises `ValueError` for the same mistakes). It also holds neural-tangents'
`get` convention: a string returns one value, a tuple (or None, meaning both kernels) a named
tuple with one field per kernel.

Shapes. tpcompile's kernels are (N1, N2) matrices (one scalar output per example), so targets are
y of shape (n, k) — neural-tangents' layout with the output axis traced (`trace_axes=(-1,)`) — or
(n,), a tpcompile extension meaning one output; results then have no output axis either.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tpcompile.errors import KernelInputError

KERNELS = ("nngp", "ntk")


class PredictInputError(KernelInputError, ValueError):
    """Bad arrays or options given to `tpcompile.predict` (shapes, non-finite or non-PSD
    kernels, unknown `get`). A `ValueError` too, so code written for neural-tangents still
    catches it."""


def default_float() -> Any:
    """JAX's default float: float64 under x64, else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def as_array(
    x: Any, what: str, ndim: int | None = None, dtype: Any = None, allow_inf: bool = False
) -> jax.Array:
    """`x` as a real JAX array (dtype: given, else x's float dtype, else JAX's default float),
    with `ndim` dimensions if given, and finite entries (or +inf, if allowed) if its values are
    known."""
    if _concrete(x):
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - anything unconvertible is the user's input
            raise PredictInputError(f"{what} is not an array: {exc}") from None
        if (
            arr.dtype == object
            or np.iscomplexobj(arr)
            or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_)
        ):
            raise PredictInputError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
        bad = np.isnan(arr) | (arr == -np.inf) if allow_inf else ~np.isfinite(arr)
        if np.any(bad):
            raise PredictInputError(f"{what} contains NaN or infinite values")
    else:
        arr = x
    if dtype is not None:
        out = jnp.asarray(arr, dtype=dtype)
    else:  # keep a float dtype (as JAX's x64 setting allows), turn others into the default float
        out = jnp.asarray(arr)
        if not jnp.issubdtype(out.dtype, jnp.floating):
            out = out.astype(default_float())
    if ndim is not None and out.ndim != ndim:
        raise PredictInputError(f"{what} must have {ndim} dimensions, got shape {out.shape}")
    return out


def as_kernel(
    k: Any, what: str, rows: int | None, cols: int | None, dtype: Any = None
) -> jax.Array:
    """A kernel matrix of shape (rows, cols) (None: any)."""
    arr = as_array(k, what, dtype=dtype)
    want = f"({'N' if rows is None else rows}, {'N' if cols is None else cols})"
    if (
        arr.ndim != 2
        or (rows is not None and arr.shape[0] != rows)
        or (cols is not None and arr.shape[1] != cols)
    ):
        raise PredictInputError(
            f"{what} has shape {tuple(arr.shape)}, expected {want}",
            hint="tpcompile kernels are (N1, N2) matrices: kernel_fn(x_test, x_train) for "
            "test-train, kernel_fn(x_train, None) for train-train",
        )
    return arr


def as_targets(y: Any, n: int | None, dtype: Any) -> jax.Array:
    """y_train of shape (n,) or (n, k), in `dtype`."""
    arr = as_array(y, "y_train", dtype=dtype)
    if arr.ndim not in (1, 2) or (n is not None and arr.shape[0] != n) or arr.size == 0:
        raise PredictInputError(
            f"y_train has shape {tuple(arr.shape)}, expected ({'n' if n is None else n}, k) "
            f"or ({'n' if n is None else n},)",
            hint="one row per training example, one column per output; its rows must match "
            "the rows of the train-train kernel",
        )
    return arr


def check_trace_axes(trace_axes: Any, y: jax.Array) -> None:
    """tpcompile kernels have no output axes, so only the (default) last axis may be traced."""
    axes = (trace_axes,) if isinstance(trace_axes, int) else tuple(trace_axes)
    if axes in ((-1,), (y.ndim - 1,)):
        return
    raise PredictInputError(
        f"trace_axes={trace_axes!r} is not supported",
        hint="tpcompile kernels are (N1, N2): the output axis is always traced, trace_axes=(-1,)",
    )


def as_outputs(fx: Any, shape: tuple[int, ...], what: str, dtype: Any) -> jax.Array:
    """Network outputs (a scalar or an array broadcastable to `shape`), broadcast to `shape`."""
    arr = as_array(fx, what, dtype=dtype)
    try:
        return jnp.broadcast_to(arr, shape)
    except ValueError:
        raise PredictInputError(
            f"{what} has shape {tuple(arr.shape)}, which does not broadcast to {shape}",
            hint="network outputs have the shape of the targets: (n, k) on the training set, "
            "(m, k) on a test set of m examples",
        ) from None


def as_times(t: Any, dtype: Any) -> jax.Array:
    """Training times: a scalar or an array of any shape, finite or +inf, never negative."""
    arr = as_array(t, "t", dtype=dtype, allow_inf=True)
    if _concrete(arr) and bool(jnp.any(arr < 0)):
        raise PredictInputError("training times t must be >= 0 (t=None means t=infinity)")
    return arr


def check_scalar(value: Any, what: str) -> float:
    """A finite, non-negative scalar option (diag_reg, learning_rate)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PredictInputError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise PredictInputError(f"{what} must be finite and >= 0, got {value!r}")
    return v


# ---- kernels as named tuples and the `get` convention -------------------------------------------


def kernel_of(k: Any, g: str, what: str) -> Any:
    """The `g` kernel of k: k itself if it is an array, else its attribute `g` (kernel_fn's
    named tuples, neural-tangents' `Kernel`)."""
    if isinstance(k, np.ndarray | jax.Array):
        return k
    value = getattr(k, g, None)
    if value is None:
        raise PredictInputError(
            f"{what} has no `{g}` kernel",
            hint=f"compute it with kernel_fn(..., get=('nngp', 'ntk')) (or include '{g}' in get)",
        )
    return value


def has_kernel(k: Any, g: str) -> bool:
    return not isinstance(k, np.ndarray | jax.Array) and getattr(k, g, None) is not None


def first_kernel(k: Any, what: str) -> Any:
    """The first kernel k holds (an array, or its `nngp`, else its `ntk`)."""
    if isinstance(k, np.ndarray | jax.Array):
        return k
    for g in KERNELS:
        if getattr(k, g, None) is not None:
            return getattr(k, g)
    raise PredictInputError(
        f"{what} is neither an array nor a named tuple with an `nngp` or `ntk` field",
        hint="pass kernel_fn(x_train, None, get=...) or an (N, N) array",
    )


def canonical_get(
    get: str | Sequence[str] | None, allowed: Sequence[str]
) -> tuple[bool, tuple[str, ...]]:
    """(one kernel asked for by a string?, the kernels asked for); None means ('nngp', 'ntk')."""
    if get is None:
        return False, KERNELS
    single = isinstance(get, str)
    fields = (get,) if single else tuple(get)
    if not fields:
        raise PredictInputError("get must not be empty", hint="get='nngp', 'ntk' or a tuple")
    if not all(isinstance(g, str) for g in fields):
        raise PredictInputError(f"get must be a string or a tuple of strings, got {get!r}")
    fields = tuple(g.lower() for g in fields)
    if len(set(fields)) < len(fields):
        raise PredictInputError(f"every entry of get must be unique, got {get!r}")
    for g in fields:
        if g not in allowed:
            raise PredictInputError(
                f"unknown get {g!r}", hint="get is " + ", ".join(repr(a) for a in allowed)
            )
    return single, fields


@functools.cache
def _named(name: str, fields: tuple[str, ...]) -> type:
    return collections.namedtuple(name, fields)


def pack(values: dict[str, Any], single: bool, fields: tuple[str, ...]) -> Any:
    """neural-tangents' return convention: one value for a string `get`, else a named tuple
    `Gaussians` with one field per kernel (each a `Gaussian` or a mean)."""
    if single:
        return values[fields[0]]
    return _named("Gaussians", fields)(*(values[g] for g in fields))
