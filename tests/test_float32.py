"""Kernels in float32: with JAX's x64 off, kernel_fn returns float32 arrays that agree with the
float64 kernels to float32 rounding.

tests/conftest.py turns x64 on for the whole suite; these tests scope float32 with
`jax.enable_x64(False)`, around the evaluation only (the compiled module is the same object as
in float64) or around compilation too.

Tolerances, from float32 rounding: see the comment at FROBENIUS below.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
import pytest

import tpcompile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {p.name: (p.read_text(), None) for p in sorted((ROOT / "examples").glob("*.tp"))}
CLOSED_FORM = {  # programs whose every expectation is a closed form
    "erf mlp": (
        """
input x
weight U ~ N(0, 1.5)
weight W ~ N(0, 2.0)
bias b ~ N(0, 0.2)
h = W @ erf(U @ x + b) + b
output erf(h)
""",
        None,
    ),
    "gelu": (
        """
input x
weight U ~ N(0, 1.0)
weight W ~ N(0, 2.0)
output gelu(W @ gelu(U @ x))
""",
        None,
    ),
    "step": ("input x\nweight U ~ N(0, 1)\noutput step(U @ x)\n", None),  # arccos in the NNGP
    "relu mlp L=10": ((ROOT / "examples" / "mlp.tp").read_text(), {"L": 10}),
}
PROGRAMS = {**EXAMPLES, **CLOSED_FORM}

# Tolerances, from float32 rounding. The unit roundoff is u = 2^-24 = 6.0e-8. A kernel entry is a
# chain of a few dozen float32 stages per layer (dot products over the d inputs, a closed form's
# sqrt/arccos/atan2, or a Mehler series whose summation error is ~u times the sum of its
# decreasing terms, i.e. ~u times the scale), over up to T = 5 tied steps or L = 10 layers here,
# each stage adding ~u relative to the kernel's scale: a few hundred u (~2e-5) at worst,
# ~sqrt(#stages) u typically.
# Measured with `errors` below (x, x2: 8 rows, 3 of x2's repeat rows of x; seeds 0, 1),
# worst over NNGP and NTK, x2 = None and x2 given:
#     program        Frobenius   entry      identical inputs
#     rnn.tp         2.0e-6      3.1e-6     6.6e-6   (tanh Mehler series through 5 tied steps)
#     gated.tp       1.0e-6      8.0e-7     1.6e-6   (sigmoid Mehler series)
#     cnn1d.tp       2.9e-7      3.0e-7     6.0e-7
#     relu L=10      3.5e-7      3.0e-7     5.9e-7
#     others         <= 1.7e-7   <= 1.4e-7  <= 2.8e-7 (mlp, resnet, erf, gelu; step: 0)
# The bounds keep a 6-16x margin over the worst (for other float32 summation orders, e.g. another
# CPU or XLA version), i.e. ~300-800 u, the a-priori worst case above. They stay below sqrt(u) =
# 2.4e-4: a correlation rounded to 1 - u instead of exactly 1 moves arccos/atan2 by sqrt(2 u) =
# 3.5e-4 and the diagonal of `step` by 1.1e-4 relative (relu's NTK similarly). Entries of two
# identical inputs (the diagonal, and x2's repeated rows) have correlation exactly 1 in float32 as
# in float64 (each input's variance and the pair's covariance come from the same computation);
# SAME = 4e-5 makes that property a tested one. (An error of ~4e-4, worst on the diagonal, would
# be that sqrt(u) failure, amplified through a few layers; it is not what the code does now.)
FROBENIUS = 2e-5  # ||K32 - K64||_F / ||K64||_F
ENTRY = 5e-5  # |K32 - K64| <= ENTRY (|K64| + max |K64|), the entrywise convention of the suite
SAME = 4e-5  # |K32 - K64| <= SAME |K64| on entries of two identical inputs (the diagonal)


@functools.cache
def compiled(name: str) -> tpcompile.Compiled:
    source, params = PROGRAMS[name]
    return tpcompile.compile(source, params=params, filename=name)


def batches(c: tpcompile.Compiled, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x and x2, 8 rows each (the same shapes: no new compilation), the first 3 of x2 rows of x
    (correlation-1 cross entries); norms spread over [0.5, 2] x typical."""
    rng = np.random.default_rng(seed)
    shape = (*c.ir.input.shape, 4)
    x = rng.standard_normal((8, *shape)) * rng.uniform(0.5, 2.0, (8,) + (1,) * len(shape))
    return x, np.concatenate([x[:3], rng.standard_normal((5, *shape))])


def identical(x: np.ndarray, x2: np.ndarray | None) -> np.ndarray:
    """Mask of kernel entries whose two inputs are the same array row."""
    a = x.reshape(len(x), -1)
    b = a if x2 is None else x2.reshape(len(x2), -1)
    return np.all(a[:, None, :] == b[None, :, :], axis=-1)


def errors(k32, k64, same: np.ndarray) -> tuple[float, float, float]:
    """(relative Frobenius error, worst entry error relative to |K64| + max |K64|, worst error
    relative to |K64| on the `same` entries)."""
    k32, k64 = np.asarray(k32, np.float64), np.asarray(k64, np.float64)
    frob = np.linalg.norm(k32 - k64) / np.linalg.norm(k64)
    entry = np.max(np.abs(k32 - k64) / (np.abs(k64) + np.max(np.abs(k64))))
    diag = np.max(np.abs(k32 - k64)[same] / np.abs(k64[same]))
    return float(frob), float(entry), float(diag)


def check(k32, k64, same: np.ndarray, what: str) -> None:
    assert same.any()
    for kind in ("nngp", "ntk"):
        a, b = getattr(k32, kind), getattr(k64, kind)
        assert a.dtype == np.float32, f"{what} {kind}: {a.dtype}, x64 is off"
        assert b.dtype == np.float64
        assert np.all(np.isfinite(a)), f"{what} {kind}: non-finite float32 entries"
        frob, entry, diag = errors(a, b, same)
        assert frob < FROBENIUS and entry < ENTRY and diag < SAME, (
            f"{what} {kind}: float32 off by {frob:.1e} (Frobenius), {entry:.1e} (worst entry), "
            f"{diag:.1e} (identical inputs)"
        )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_float32_kernels_match_float64(name: str, seed: int) -> None:
    c = compiled(name)
    x, x2 = batches(c, seed)
    for b in (None, x2):
        k64 = c.kernel_fn(x, b)
        with jax.enable_x64(False):
            k32 = c.kernel_fn(x, b)
        check(k32, k64, identical(x, b), f"{name} x2={'None' if b is None else 'x2'}")


@pytest.mark.parametrize("name", ["gated.tp", "rnn.tp"])
def test_float32_compiled_under_float32(name: str) -> None:
    """Compiling with x64 off as well (the numerical rules' tables are built in float32)."""
    source, params = PROGRAMS[name]
    x, _ = batches(compiled(name), 0)
    k64 = compiled(name).kernel_fn(x)
    with jax.enable_x64(False):
        k32 = tpcompile.compile(source, params=params).kernel_fn(x)
    check(k32, k64, identical(x, None), name)


def test_float32_is_scoped_to_the_context() -> None:
    c = compiled("mlp.tp")
    x, _ = batches(c, 0)
    with jax.enable_x64(False):
        assert c.kernel_fn(x, get="nngp").dtype == np.float32
    assert c.kernel_fn(x, get="nngp").dtype == np.float64  # conftest's float64 is back
