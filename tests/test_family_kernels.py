"""Kernels over index families (the family path: `ir/template.py`, `kernels/families.py`,
`codegen/tensor.py`) against two oracles:

- the unrolled program (`compile(..., unroll=True)`): every position its own scalar quantity,
  the scalar Master Theorem. Both paths evaluate the same closed forms in float64, so they agree
  to rounding: sums over at most a few hundred member pairs and taps, a few layers deep, lose
  a few ulps each; 1e-12 relative leaves a factor ~100 over what we see (~1e-14);
- an independent NumPy CNTK (`numpy_reference_conv.py`), which propagates the NTK forwards over
  position-pair tensors, where tpcompile sums backward covariances over matrix uses.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from numpy_reference_conv import cnn_gap_kernels
from program_strategies import conv_programs
from test_families import CIRCULAR_2D, STRIDED_DILATED, ZERO_PADDED_POOLED

import tpcompile
from tpcompile.cli import main
from tpcompile.ir.families import roll
from tpcompile.ir.template import template
from tpcompile.lang.frontend import load_program

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RTOL = 1e-12

SHARED_RESIDUAL = """
param P = 5
input x[1..P]
weight K[1..3] ~ N(0, 2.0/3)
weight V[1..3] ~ N(0, 2.0/3)
bias b ~ N(0, 0.1)
for p in 1..P {
    h[p] = sum(K[k] @ x[(p + k - 3) % P + 1] for k in 1..3) + b
}
for p in 1..P {
    g[p] = h[p] + sum(V[k] @ relu(h[(p + k - 3) % P + 1]) for k in 1..3)
}
for p in 1..P {
    f[p] = g[p] + sum(V[k] @ relu(g[(p + k - 3) % P + 1]) for k in 1..3)
}
output mean(relu(f[p]) for p in 1..P)
"""

POLYNOMIAL_GATE = """
param P = 4
input x[1..P]
weight K[1..2] ~ N(0, 1.0)
weight V ~ N(0, 1.0)
for p in 1..P {
    h[p] = sum(K[k] @ x[(p + k - 2) % P + 1] for k in 1..2)
}
for p in 1..P {
    g[p] = V @ (h[p] * h[p % P + 1])
}
output mean(g[p] * g[(p + 1) % P + 1] for p in 1..P)
"""

# Stride 2, then dilation 2: the closed-form version of test_families' program.
STRIDED_ERF = STRIDED_DILATED.replace("tanh(", "erf(").replace("sin(", "erf(")


def _inputs(shape: tuple[int, ...], n1: int = 3, n2: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n1, *shape, 2)), rng.normal(size=(n2, *shape, 2))


def assert_kernels_close(got: object, want: object, rtol: float = RTOL) -> None:
    """NNGP and NTK to `rtol`. An entry is a sum of terms of the kernel's scale that may cancel
    (a linear network has entries near 0): rounding is relative to the scale, not the entry."""
    for field in ("nngp", "ntk"):
        expected = np.asarray(getattr(want, field))
        atol = rtol * np.abs(expected).max()
        np.testing.assert_allclose(np.asarray(getattr(got, field)), expected, rtol=rtol, atol=atol)


def _compare(src: str, params: dict, shape: tuple[int, ...]) -> tpcompile.Compiled:
    rolled = tpcompile.compile(src, params=params)
    unrolled = tpcompile.compile(src, params=params, unroll=True)
    x1, x2 = _inputs(shape)
    for a, b in ((x1, None), (x1, x2)):
        assert_kernels_close(rolled.kernel_fn(a, b), unrolled.kernel_fn(a, b))
    return rolled


@pytest.mark.parametrize(
    ("src", "params", "shape"),
    [
        ((EXAMPLES / "cnn1d.tp").read_text(), {"P": 5}, (5,)),
        ((EXAMPLES / "cnn2d.tp").read_text(), {"H": 3, "W": 3}, (3, 3)),
        (CIRCULAR_2D, {"H": 3, "W": 3}, (3, 3)),
        (ZERO_PADDED_POOLED, {"P": 6}, (6,)),
        (SHARED_RESIDUAL, {}, (5,)),
        (POLYNOMIAL_GATE, {}, (4,)),
        (STRIDED_ERF, {"P": 6}, (6,)),
    ],
    ids=[
        "cnn1d",
        "cnn2d-zero",
        "circular-2d",
        "zero-padded-pooled",
        "shared-residual",
        "polynomial-gate",
        "strided-erf",
    ],
)
def test_rolled_matches_unrolled(src: str, params: dict, shape: tuple[int, ...]) -> None:
    assert _compare(src, params, shape).rolled


@pytest.mark.parametrize(
    ("padding", "grid", "layers", "readout"),
    [
        ("zero", (4, 3), 3, "gap"),
        ("circular", (3, 3), 2, "gap"),
        ("zero", (6,), 2, "gap"),
        ("zero", (4, 3), 2, "flatten"),
        ("circular", (5,), 3, "flatten"),
    ],
)
def test_cnn_matches_numpy_cntk(
    padding: str, grid: tuple[int, ...], layers: int, readout: str
) -> None:
    """A relu CNN with global average pooling, or a flatten readout (a readout vector per
    position), against the forward CNTK recursion (the closed forms are the same arc-cosine
    maps in both, so rounding is all that separates them)."""
    names = ["i", "j"][: len(grid)]
    taps = ["u", "v"][: len(grid)]
    if padding == "circular":
        index = [
            f"({n} + {t} - 3 + {s}) % {s} + 1" for n, t, s in zip(names, taps, grid, strict=True)
        ]
        conds = ["" for _ in names]
    else:
        index = [f"{n} + {t} - 2" for n, t in zip(names, taps, strict=True)]
        conds = [
            f" if {n} + {t} - 2 >= 1 and {n} + {t} - 2 <= {s}"
            for n, t, s in zip(names, taps, grid, strict=True)
        ]

    def conv(weight: str, arg: str) -> str:
        term = f"{weight}[{', '.join(taps)}] @ {arg.format(', '.join(index))}"
        for t, cond in zip(reversed(taps), reversed(conds), strict=True):
            term = f"sum({term} for {t} in 1..3{cond})"
        return term

    loops = ", ".join(names)
    space = " * ".join(str(s) for s in grid)
    lines = [f"input x[{', '.join(f'1..{s}' for s in grid)}]"]
    lines += [
        f"weight K{l}[{', '.join('1..3' for _ in grid)}] ~ N(0, {2 / 3 ** len(grid)})"
        for l in range(1, layers + 1)
    ]
    lines += [f"bias b{l} ~ N(0, 0.1)" for l in range(1, layers + 1)]
    for l in range(1, layers + 1):
        arg = "x[{}]" if l == 1 else f"relu(h{l - 1}[{{}}])"
        body = f"h{l}[{loops}] = {conv(f'K{l}', arg)} + b{l}"
        for n, s in zip(reversed(names), reversed(grid), strict=True):
            body = f"for {n} in 1..{s} {{\n{body}\n}}"
        lines.append(body)
    if readout == "gap":
        pooled = f"relu(h{layers}[{loops}])"
        for n, s in zip(reversed(names), reversed(grid), strict=True):
            pooled = f"mean({pooled} for {n} in 1..{s})"
        lines.append(f"output {pooled}")
    else:  # one flat position index p, row-major
        at = "p" if len(grid) == 1 else f"(p - 1) // {grid[1]} + 1, (p - 1) % {grid[1]} + 1"
        lines.append(f"output flatten(relu(h{layers}[{at}]) for p in 1..{space})")
    src = "\n".join(lines) + "\n"
    c = tpcompile.compile(src)
    assert c.rolled, space
    offsets = [tuple(o) for o in np.ndindex(*(3,) * len(grid))]
    offsets = [tuple(int(k) - 1 for k in o) for o in offsets]
    x1, x2 = _inputs(grid)
    for a, b in ((x1, None), (x1, x2)):
        got = c.kernel_fn(a, b)
        want = cnn_gap_kernels(
            a,
            b,
            offsets=offsets,
            layers=layers,
            padding=padding,
            s2=2 / 3 ** len(grid),
            sb2=0.1,
            readout=readout,
        )
        np.testing.assert_allclose(np.asarray(got.nngp), want.nngp, rtol=RTOL)
        np.testing.assert_allclose(np.asarray(got.ntk), want.ntk, rtol=RTOL)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_programs())
def test_random_convolutions_roll(src: str) -> None:
    """Random convolutional programs: every padding, dilation, residuals, shared tap matrices
    and pooling; the family path applies (closed forms only: wherever a family beyond the data
    has several members) and agrees with the unrolled one."""
    size = int(src.split("x[1..", 1)[1].split("]", 1)[0])
    trivial = template(roll(load_program(src))).is_trivial
    assert _compare(src, {}, (size,)).rolled == (not trivial)


@pytest.mark.parametrize("name", ["mlp.tp", "rnn.tp", "gated.tp", "resnet.tp"])
def test_programs_without_position_families_keep_the_scalar_path(name: str) -> None:
    assert not tpcompile.compile((EXAMPLES / name).read_text()).rolled


NUMERIC_GATE = """
param P = 4
input x[1..P]
weight K[1..3] ~ N(0, 2.0/3)
weight V ~ N(0, 1.0)
bias b ~ N(0, 0.1)
for p in 1..P {
    h[p] = sum(K[k] @ x[(p + k - 3) % P + 1] for k in 1..3) + b
}
for p in 1..P {
    g[p] = V @ (BODY)
}
output mean(relu(g[p]) for p in 1..P)
"""


@pytest.mark.parametrize(
    ("src", "params", "methods"),
    [
        ((EXAMPLES / "cnn1d.tp").read_text().replace("relu(", "tanh("), {"P": 4}, {"mehler"}),
        (STRIDED_DILATED, {"P": 8}, {"mehler", "panel"}),
        (NUMERIC_GATE.replace("BODY", "relu(h[p]) * tanh(h[p])"), {}, {"split"}),
        (NUMERIC_GATE.replace("BODY", "tanh(h[p]) * sigmoid(h[p % P + 1])"), {"P": 3}, {"tensor"}),
    ],
    ids=["tanh-mehler", "strided-tanh-sin", "kinked-split", "gate-tensor"],
)
def test_numerical_expectations_over_families(src: str, params: dict, methods: set) -> None:
    """Expectations without closed forms run over member pairs by the scalar path's own rules
    (codegen/numerics.py). Each numerical quantity is accurate to its tolerance (1e-10 relative,
    reported per quantity) on both paths, and a kernel sums a few tens of them with O(1)
    factors: they agree to 1e-8, with the same scale-relative floor as the closed forms. Fixed
    rules (split, tensor Gauss-Hermite: whose own error estimate is far larger) are the same
    computation on both paths, and agree to rounding."""
    rolled = tpcompile.compile(src, params=params)
    unrolled = tpcompile.compile(src, params=params, unroll=True)
    assert rolled.rolled and methods <= {q.method for q in rolled.numerics}
    x1, x2 = _inputs((rolled.ir.input.shape[0],), n1=2, n2=2)
    for b in (None, x2):
        got, report = rolled.kernel_fn(x1, b, return_errors=True)
        assert len(report)  # their errors are reported, as on the scalar path
        assert_kernels_close(got, unrolled.kernel_fn(x1, b), rtol=1e-8)


def test_graph_size_does_not_grow_with_positions() -> None:
    """The number of kernel quantities (hence compile time and code size) follows the number
    of families, not of positions (small images merge a few coinciding border maps)."""
    src = (EXAMPLES / "cnn2d.tp").read_text()
    sizes = {n: len(tpcompile.compile(src, params={"H": n, "W": n}).graph.nodes) for n in (12, 16)}
    assert sizes[12] == sizes[16], sizes


def test_pickle_keeps_the_path() -> None:
    src = (EXAMPLES / "cnn1d.tp").read_text()
    c = tpcompile.compile(src, params={"P": 4}, unroll=True)
    assert not pickle.loads(pickle.dumps(c)).rolled
    assert pickle.loads(pickle.dumps(tpcompile.compile(src, params={"P": 4}))).rolled


def test_diagonal_is_the_per_example_kernel_bitwise() -> None:
    """K(x, x) alone equals the diagonal of K(X, X) bit for bit: both come from the per-example
    pass, computed in blocks of a fixed number of examples whatever N is."""
    c = tpcompile.compile((EXAMPLES / "cnn2d.tp").read_text(), params={"H": 3, "W": 3})
    x, _ = _inputs((3, 3), n1=11)
    grid = c.kernel_fn(x)
    for i in (0, 5, 10):
        alone = c.kernel_fn(x[i : i + 1])
        for field in ("nngp", "ntk"):
            assert np.asarray(getattr(alone, field))[0, 0] == np.asarray(getattr(grid, field))[i, i]


def test_float32_agrees_with_float64() -> None:
    """float32 rounding (~6e-8 per operation) through three layers of closed forms: 1e-4 is the
    arc-cosine's amplification near identical inputs (ANCHORS: ~4e-4 on MLP diagonals)."""
    import jax

    c = tpcompile.compile((EXAMPLES / "cnn2d.tp").read_text(), params={"H": 3, "W": 3})
    x, y = _inputs((3, 3))
    want = c.kernel_fn(x, y)
    with jax.enable_x64(False):
        got = c.kernel_fn(x.astype(np.float32), y.astype(np.float32))
        assert got.ntk.dtype == np.float32
    for field in ("nngp", "ntk"):
        np.testing.assert_allclose(
            np.asarray(getattr(got, field)), np.asarray(getattr(want, field)), rtol=1e-4
        )


@pytest.mark.slow
def test_verify_cnn2d(capsys: pytest.CaptureFixture[str]) -> None:
    """Finite-width 2-D CNNs (the unrolled program as a network) converge to the rolled kernels
    at the c/√n rate (measured up to width 1024: slopes -0.50 NNGP, -0.59 NTK; to 512: 45 s)."""
    code = main(
        ["verify", str(EXAMPLES / "cnn2d.tp"), "-D", "H=3", "-D", "W=3"]
        + ["--widths", "64,128,256,512", "--seeds", "16"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: ok" in out
