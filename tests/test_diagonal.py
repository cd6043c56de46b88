"""The diagonal of K(X, X) is K(x, x): the same numbers for every batch size and precision.

`Compiled.kernel_fn(X)` writes the per-example pass (every covariance a variance, every angle
exactly 0) onto the diagonal. What can fail, and did before (1.6e-8 in float64, 3-5e-4 in
float32 at N >= 64): the per-example pass giving an example different bits in different batches.
And the pass must compute the same quantity as the pair grid: K(X, X') with X' a copy of X (two
batches, no diagonal written) agrees with it to the grid's rounding at correlation 1.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

import tpcompile

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 63, 64, 65, 200, 1000)


def _batch(compiled: tpcompile.Compiled, n: int, dtype: type) -> np.ndarray:
    shape = (n, *compiled.ir.input.shape, 5)
    return np.random.default_rng(n).normal(size=shape).astype(dtype)


@pytest.mark.parametrize("x64", [True, False], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["mlp.tp", "resnet.tp"])
def test_diagonal_is_the_single_example_kernel_bitwise(name: str, x64: bool) -> None:
    with jax.enable_x64(x64):
        compiled = tpcompile.compile((ROOT / "examples" / name).read_text())
        dtype = np.float64 if x64 else np.float32
        for n in SIZES:
            x = _batch(compiled, n, dtype)
            k = compiled.kernel_fn(x)
            for i in sorted({0, n // 2, n - 1}):
                one = compiled.kernel_fn(x[i : i + 1])
                assert np.asarray(one.nngp)[0, 0] == np.asarray(k.nngp)[i, i], (n, i)
                assert np.asarray(one.ntk)[0, 0] == np.asarray(k.ntk)[i, i], (n, i)


def test_numerical_diagonal_agrees_within_its_error() -> None:
    # rnn.tp's tanh expectations are numerical (Mehler series, adaptive over the batch): the
    # diagonal is the same quantity to the series' tolerance (1e-10 relative by default).
    compiled = tpcompile.compile((ROOT / "examples" / "rnn.tp").read_text())
    x = _batch(compiled, 65, np.float64)
    k = compiled.kernel_fn(x)
    for i in (0, 64):
        one = compiled.kernel_fn(x[i : i + 1])
        np.testing.assert_allclose(np.asarray(one.ntk)[0, 0], np.asarray(k.ntk)[i, i], rtol=1e-9)


@pytest.mark.parametrize("name", ["mlp.tp", "resnet.tp", "gated.tp"])
def test_diagonal_pass_computes_the_pair_grid_quantity(name: str) -> None:
    compiled = tpcompile.compile((ROOT / "examples" / name).read_text())
    x = _batch(compiled, 7, np.float64)
    same = compiled.kernel_fn(x)
    grid = compiled.kernel_fn(x, x.copy())  # two batches: the grid's own (a, a) entries
    for kind in ("nngp", "ntk"):
        d_pass = np.diag(np.asarray(getattr(same, kind)))
        d_grid = np.diag(np.asarray(getattr(grid, kind)))
        # arccos at correlation 1 turns an ulp of the grid's cosine into ~1e-8 (sqrt(eps)).
        np.testing.assert_allclose(d_pass, d_grid, rtol=1e-6)
        # Off the diagonal, K(X, X) is the grid's kernel: its pairs above the diagonal are
        # computed as a list of pairs (1-D arrays, where XLA may round a multiply-add apart
        # from the 2-D grid's: a few ulps, 1e-12 relative leaves room for the arccos).
        off = ~np.eye(7, dtype=bool)
        np.testing.assert_allclose(
            np.asarray(getattr(same, kind))[off],
            ((np.asarray(getattr(grid, kind)) + np.asarray(getattr(grid, kind)).T) / 2)[off],
            rtol=1e-12,
        )
