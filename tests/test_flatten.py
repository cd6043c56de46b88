"""`output flatten(...)`: an independent readout vector per term (docs/language.md).

The language (its meaning, its errors, its IR), and its kernels: on the scalar path against the
kernels of each output alone (independent readouts: NNGP and NTK are the mean of the outputs'
own kernels, derived below), on the family path against the unrolled program. The NumPy CNTK
reference (tests/test_family_kernels.py) and the finite network (tests/test_finite.py) check
it independently.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_family_kernels import assert_kernels_close

import tpcompile
from tpcompile import TPError, load_program
from tpcompile.ir import format_program

TWO_DEPTHS = """
input x
weight U ~ N(0, 1.5)
weight W ~ N(0, 2.0)
bias b ~ N(0, 0.1)
readout ~ N(0, 1.0) + N(0, 0.2)
h[1] = U @ x + b
h[2] = W @ relu(h[1]) + b
h[3] = W @ relu(h[2])
output {output}
"""

CONV = """
param P = 5
input x[1..P]
weight K[1..3] ~ N(0, 2.0/3)
weight V[1..3] ~ N(0, 1.0/3)
bias b ~ N(0, 0.1)
readout ~ N(0, 2.0) + N(0, 0.1)
for p in 1..P {
    h[p] = sum(K[k] @ x[(p + k - 3) % P + 1] for k in 1..3) + b
}
for p in 1..P {
    g[p] = sum(V[k] @ erf(h[p + k - 2]) for k in 1..3 if p + k - 2 >= 1 and p + k - 2 <= P)
}
output flatten(relu(g[p]) + h[p] for p in 1..P)
"""


def test_flatten_is_one_readout_per_term() -> None:
    program = load_program(TWO_DEPTHS.format(output="flatten(relu(h[p]) for p in 2..3)"))
    assert len(program.outputs) == 2
    assert (
        format_program(program)
        .splitlines()[-1]
        .startswith(f"output flatten({program.outputs[0]}, {program.outputs[1]})")
    )
    single = load_program(TWO_DEPTHS.format(output="relu(h[3])"))
    assert len(single.outputs) == 1


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("relu(flatten(h[p] for p in 1..2))", "`flatten(...)` is a readout"),
        ("flatten(1.0 for p in 1..2)", "the output must be a vector"),
        ("flatten(h[p] for p in 1..3 if p > 5)", "has no terms"),
    ],
)
def test_flatten_errors(output: str, message: str) -> None:
    with pytest.raises(TPError, match=re.escape(message)) as info:
        load_program(TWO_DEPTHS.format(output=output), filename="f.tp")
    assert str(info.value).startswith("f.tp:10:")  # the output line, with a caret


def test_scalar_flatten_is_the_mean_of_the_outputs_kernels() -> None:
    """f = (f_2 + f_3)/√2 with independent readout vectors v_2, v_3 (each of variance sv2):
    E[f f'] = (K_2 + K_3)/2 for the readout weights, and in the NTK the cross terms
    ∂f_2·∂f_3 through the shared U, W, b carry E[v_2 v_3] = 0, so Θ = (Θ_2 + Θ_3)/2 as well.
    The readout bias is one β0 in each program: it enters the mean once."""
    x = np.random.default_rng(0).normal(size=(5, 3))
    flat = tpcompile.compile(TWO_DEPTHS.format(output="flatten(relu(h[p]) for p in 2..3)"))
    alone = [tpcompile.compile(TWO_DEPTHS.format(output=f"relu(h[{i}])")) for i in (2, 3)]
    got = flat.kernel_fn(x)
    parts = [c.kernel_fn(x) for c in alone]
    for field in ("nngp", "ntk"):
        want = sum(np.asarray(getattr(k, field)) for k in parts) / 2
        np.testing.assert_allclose(np.asarray(getattr(got, field)), want, rtol=1e-13)


def test_family_flatten_matches_unrolled() -> None:
    rolled, unrolled = tpcompile.compile(CONV), tpcompile.compile(CONV, unroll=True)
    assert rolled.rolled and not unrolled.rolled
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(4, 5, 3)), rng.normal(size=(3, 5, 3))
    for b in (None, x2):
        assert_kernels_close(rolled.kernel_fn(x1, b), unrolled.kernel_fn(x1, b))


def test_part_of_a_family_keeps_the_unrolled_path() -> None:
    """A flatten over some members of a family (or a family read twice) is not a family-wide
    readout: the program is compiled unrolled, with the same meaning."""
    src = CONV.replace("flatten(relu(g[p]) + h[p] for p in 1..P)", "flatten(g[p] for p in 2..P)")
    c = tpcompile.compile(src)
    assert not c.rolled
    assert len(c.ir.outputs) == 4
    x = np.random.default_rng(2).normal(size=(3, 5, 3))
    k = c.kernel_fn(x)
    assert np.all(np.isfinite(np.asarray(k.ntk)))
