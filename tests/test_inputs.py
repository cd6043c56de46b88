"""One validation of array inputs (`tpcompile.inputs`) for kernels and finite networks alike."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import tpcompile
from tpcompile.errors import KernelInputError

RNN = """
param T = 3
input x[1..T]
weight U ~ N(0, 1)
weight W ~ N(0, 1)
h[1] = U @ x[1]
for t in 2..T {
    h[t] = W @ tanh(h[t-1]) + U @ x[t]
}
output h[T]
"""

GOOD = np.random.default_rng(0).normal(size=(4, 3, 2))
NAN = GOOD.copy()
NAN[1, 2, 0] = np.nan
BAD = {
    "nan": (
        NAN,
        r"contains NaN or infinite values \(1 of 24; the first, nan, at index \[1, 2, 0\]\)",
    ),
    "shape": (GOOD[:, :2], r"needs \(N, 3, d\)"),
    "empty": (GOOD[:0], "is empty"),
    "strings": (np.array([["a"]]), "real numeric array"),
    "complex": (GOOD + 1j, "real numeric array"),
    "none": (None, "is None, not an array"),
    "text": ("x.npy", "is a str, not an array"),
    "ragged": ([[[1.0, 2.0]] * 3, [[1.0]] * 3], "not a rectangular array"),
    "objects": (np.array([None, 1.0], dtype=object), "holds Python objects"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_kernels_and_networks_refuse_the_same_arrays(case: str) -> None:
    x, message = BAD[case]
    c = tpcompile.compile(RNN)
    net = c.finite(8, data_dim=2)
    params = net.init(jax.random.PRNGKey(0))
    with pytest.raises(KernelInputError, match=message):
        c.kernel_fn(x)
    with pytest.raises(KernelInputError, match=message):
        net.apply(params, x)


def test_network_inputs_may_be_traced() -> None:
    net = tpcompile.compile(RNN).finite(8, data_dim=2)
    params = net.init(jax.random.PRNGKey(0))
    eager = net.apply(params, GOOD)
    jitted = jax.jit(net.apply)(params, GOOD)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-12)
    with pytest.raises(KernelInputError, match="needs"):
        jax.jit(net.apply)(params, GOOD[:, :2])
