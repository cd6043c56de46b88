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
from tpcompile.ir import Input, Program


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
        arr = _as_numeric(x, inp, what)
        _check_shape(arr.shape, inp, what)
        if arr.shape[0] == 0 or arr.shape[-1] == 0:
            raise KernelInputError(f"{what} is empty (shape {arr.shape})")
        finite = np.isfinite(arr)
        if not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise KernelInputError(
                f"{what} contains NaN or infinite values ({int((~finite).sum())} of "
                f"{arr.size}; the first, {arr[first]}, at index {list(first)})",
                hint="drop or impute those entries before computing kernels",
            )
    if dtype is None and not jnp.issubdtype(arr.dtype, jnp.floating):
        dtype = default_float()
    out = jnp.asarray(arr) if dtype is None else jnp.asarray(arr, dtype=dtype)
    return out.reshape(arr.shape[0], inp.positions, arr.shape[-1])


def _as_numeric(x: Any, inp: Input, what: str) -> np.ndarray:
    """`x` as a NumPy array of real numbers, or an error saying what it is instead."""
    want = _wanted(inp)
    if x is None or isinstance(x, str | bytes | dict):
        raise KernelInputError(
            f"{what} is {'None' if x is None else 'a ' + type(x).__name__}, not an array",
            hint=f"pass an array of shape {want} (a NumPy or JAX array, or nested lists)",
        )
    try:
        arr = np.asarray(x)
    except ValueError:  # NumPy refuses nested sequences of different lengths
        raise KernelInputError(
            f"{what} is not a rectangular array (nested sequences of different lengths)",
            hint=f"every row needs the same shape: {want} in all",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any unconvertible object is the user's input
        raise KernelInputError(f"{what} is not an array: {exc}") from None
    if arr.dtype == object:
        raise KernelInputError(
            f"{what} holds Python objects (dtype object), not numbers",
            hint=f"an array of numbers of shape {want}",
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        kind = {"U": " (text)", "S": " (bytes)", "c": " (complex)"}.get(arr.dtype.kind, "")
        raise KernelInputError(
            f"{what} must be a real numeric array, got dtype {arr.dtype}{kind}",
            hint=f"an array of real numbers of shape {want}",
        )
    return arr


def _wanted(inp: Input) -> str:
    return "(" + ", ".join(("N", *map(str, inp.shape), "d")) + ")"


def _check_shape(shape: tuple[int, ...], inp: Input, what: str) -> None:
    want = ("N", *map(str, inp.shape), "d")
    if len(shape) != len(want) or tuple(shape[1:-1]) != inp.shape:
        raise KernelInputError(
            f"{what} has shape {shape}; `input {inp.name}` needs ({', '.join(want)})",
            hint="an indexed input x[1..T] takes arrays of shape (N, T, d)"
            if inp.shape
            else "one data vector per row: shape (N, d)",
        )


DEMO_LIMIT = 1 << 20  # numbers in the built-in demo batch (8 MB in float64): --x for more


def demo_inputs(program: Program, n: int = 4, d: int = 3, seed: int = 0) -> np.ndarray:
    """A small fixed batch shaped for the program's input, (n, d) or (n, T, d): the CLI's inputs
    when no --x is given. Bounded, so a program with a huge input range is refused, not run."""
    inp = program.input
    shape = (n, *inp.shape, d)
    if n * inp.positions * d > DEMO_LIMIT:  # input x[1..10**8]: not a demo any more
        raise KernelInputError(
            f"the built-in demo inputs for `input {inp.name}` would have shape {shape}, "
            f"{n * inp.positions * d} numbers (more than {DEMO_LIMIT})",
            hint="give the inputs yourself: --x A.npy, an array of shape "
            f"(N, {', '.join(map(str, inp.shape))}, d)",
        )
    return np.random.default_rng(seed).normal(size=shape)
