"""Non-finite kernels are an error naming the first quantity that overflowed, never a silent NaN.

`Compiled.kernel_fn` checks the NNGP/NTK it returns; when an entry is inf or NaN it evaluates again
with every quantity recorded (`trace`, the failing path only) and raises `NonFiniteKernelError`
with the label of the first non-finite quantity in evaluation order. Under `jax.jit` values cannot
be inspected and the check is skipped. The CLI maps the error, a `TPError`, to exit status 1.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

import tpcompile
from tpcompile.cli import main
from tpcompile.errors import KernelInputError, NonFiniteKernelError

# Each layer multiplies the variance by 1e300: the second layer's covariance is ~1e600 = inf.
OVERFLOW = """input x
weight U ~ N(0, 1e300)
weight W ~ N(0, 1e300)
h = relu(U @ x)
output relu(W @ h)
"""
TANH = "input x\nweight U ~ N(0, 1)\noutput tanh(U @ x)\n"


def inputs(n: int = 3, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(0).normal(size=(n, 4))


def first_nonfinite_label(c: tpcompile.Compiled, x: np.ndarray) -> str:
    """The expected answer, found independently of `_diagnose`: evaluate the generated diagonal
    with a trace and take the lowest node (nodes are numbered in evaluation order) whose value has
    a non-finite entry."""
    trace: dict[int, object] = {}
    c._module["diagonal"](c._check(x, "x1"), None, trace)
    bad = [
        k
        for k, v in trace.items()
        if not all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree_util.tree_leaves(v))
    ]
    assert bad, "the per-input quantities are all finite"
    return c.graph.nodes[min(bad)].label


def test_overflowing_variances_name_the_quantity() -> None:
    c = tpcompile.compile(OVERFLOW)
    x = inputs()
    with pytest.raises(NonFiniteKernelError) as info:
        c.kernel_fn(x)
    message = str(info.value)
    assert f"`{first_nonfinite_label(c, x)}`" in message
    assert "variance" in message and "not finite" in message
    assert isinstance(info.value, KernelInputError)  # a user error: exit 1, not a crash


def test_huge_inputs_name_the_data_gram() -> None:
    c = tpcompile.compile(TANH)
    with pytest.raises(NonFiniteKernelError, match=r"`<x, x>/d`.*\n.*input") as info:
        c.kernel_fn(inputs(scale=1e200), get="nngp")
    assert "the scale of the inputs" in str(info.value)
    # Huge inputs in the second batch only: the first non-finite quantity is x2's own gram.
    relu = tpcompile.compile(TANH.replace("tanh", "relu"))
    with pytest.raises(NonFiniteKernelError, match=r"`<x, x>/d`.* at inputs x2;"):
        relu.kernel_fn(inputs(), inputs(2, scale=1e200))


def test_finite_kernels_and_jit_are_unchanged() -> None:
    c = tpcompile.compile(TANH)
    k = c.kernel_fn(inputs())
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    # Under jit the values are tracers: no check, the NaN/inf comes back as computed.
    out = jax.jit(lambda a: c.kernel_fn(a, get="nngp"))(inputs(scale=1e200))
    assert not np.all(np.isfinite(np.asarray(out)))


def test_cli_exits_1_on_overflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "overflow.tp"
    path.write_text(OVERFLOW)
    assert main(["kernel", str(path)]) == 1
    err = capsys.readouterr().err
    assert "not finite" in err and "Traceback" not in err
