"""Array inputs at the API edge: one check for the kernels (`api.py`) and the finite networks
(`finite/network.py`) alike, so both accept and refuse the same arrays with the same messages.

A program's data has shape (N, *input shape, d); inside tpcompile it is (N, positions, d).
Concrete arrays are checked in full (numeric dtype, shape, not empty, finite values). Traced
values (a finite network applied under `jax.jit` or `jax.grad`) have no values to look at, so
only their shape is checked.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tpcompile.errors import KernelInputError
from tpcompile.ir import Input


def default_float() -> Any:
    """JAX's default float: float64 under x64, else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def as_batch(x: Any, inp: Input, what: str, dtype: Any = None) -> jax.Array:
    """`x` checked against `input` and reshaped to (N, positions, d).

    dtype: the result's dtype; None keeps a floating dtype and turns others into JAX's default
    float.
    """
    if isinstance(x, jax.core.Tracer):
        _check_shape(tuple(x.shape), inp, what)
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - any unconvertible object is the user's input
            raise KernelInputError(f"{what} is not an array: {exc}") from None
        if (
            arr.dtype == object
            or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_)
            or np.iscomplexobj(arr)
        ):
            raise KernelInputError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
        _check_shape(arr.shape, inp, what)
        if arr.shape[0] == 0 or arr.shape[-1] == 0:
            raise KernelInputError(f"{what} is empty (shape {arr.shape})")
        if not np.all(np.isfinite(arr)):
            raise KernelInputError(f"{what} contains NaN or infinite values")
    if dtype is None and not jnp.issubdtype(arr.dtype, jnp.floating):
        dtype = default_float()
    out = jnp.asarray(arr) if dtype is None else jnp.asarray(arr, dtype=dtype)
    return out.reshape(arr.shape[0], inp.positions, arr.shape[-1])


def _check_shape(shape: tuple[int, ...], inp: Input, what: str) -> None:
    want = ("N", *map(str, inp.shape), "d")
    if len(shape) != len(want) or tuple(shape[1:-1]) != inp.shape:
        raise KernelInputError(
            f"{what} has shape {shape}; `input {inp.name}` needs ({', '.join(want)})",
            hint="an indexed input x[1..T] takes arrays of shape (N, T, d)"
            if inp.shape
            else "one data vector per row: shape (N, d)",
        )
