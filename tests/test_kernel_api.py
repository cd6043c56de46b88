"""The kernel compiler's surface: compile(), kernel_fn's call shape and input checks, and the
emit / show / kernel commands."""

from __future__ import annotations

import ast
from pathlib import Path

import jax
import numpy as np
import pytest

import tpcompile
from tpcompile import TPError
from tpcompile.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.tp"))
MLP = (ROOT / "examples" / "mlp.tp").read_text()
RNN = (ROOT / "examples" / "rnn.tp").read_text()


@pytest.fixture(scope="module")
def mlp() -> tpcompile.Compiled:
    return tpcompile.compile(MLP, params={"L": 2})


@pytest.fixture(scope="module")
def rnn() -> tpcompile.Compiled:
    return tpcompile.compile(RNN, params={"T": 3})


def rows(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (rows(5), "has shape (5,)"),
        (rows(2, 3, 4), "has shape (2, 3, 4)"),
        (np.zeros((0, 3)), "is empty"),
        (np.zeros((3, 0)), "is empty"),
        (np.array([[1.0, np.nan]]), "NaN or infinite"),
        (np.array([[1.0, np.inf]]), "NaN or infinite"),
        (np.array([["a", "b"]]), "real numeric array"),
        (np.array([[1 + 2j, 0]]), "real numeric array"),
    ],
)
def test_bad_inputs_are_clear_errors(mlp: tpcompile.Compiled, x: np.ndarray, message: str) -> None:
    with pytest.raises(TPError, match="x1") as info:
        mlp.kernel_fn(x)
    assert message in info.value.message


def test_indexed_input_shape_is_checked(rnn: tpcompile.Compiled) -> None:
    with pytest.raises(TPError, match=r"needs \(N, 3, d\)"):
        rnn.kernel_fn(rows(4, 5, 2))
    with pytest.raises(TPError, match="shape"):
        rnn.kernel_fn(rows(4, 2))


def test_data_dimension_mismatch(mlp: tpcompile.Compiled) -> None:
    with pytest.raises(TPError, match="x1 has data dimension 3 but x2 has 4"):
        mlp.kernel_fn(rows(2, 3), rows(2, 4))


def test_get_shapes_and_dtype(mlp: tpcompile.Compiled) -> None:
    x1, x2 = rows(5, 3), rows(7, 3, seed=1)
    both = mlp.kernel_fn(x1, x2)
    assert both._fields == ("nngp", "ntk")
    assert both.nngp.shape == both.ntk.shape == (5, 7)
    assert both.ntk.dtype == np.float64
    ntk = mlp.kernel_fn(x1, x2, get="ntk")
    np.testing.assert_array_equal(ntk, both.ntk)
    only = mlp.kernel_fn(x1, x2, get=("nngp",))
    assert only._fields == ("nngp",)
    np.testing.assert_array_equal(only.nngp, both.nngp)
    with pytest.raises(TPError, match="unknown kernel"):
        mlp.kernel_fn(x1, get="cntk")


def test_lists_and_float32_inputs_are_accepted(mlp: tpcompile.Compiled) -> None:
    x = rows(3, 2)
    a = mlp.kernel_fn(x.tolist(), get="nngp")
    b = mlp.kernel_fn(x.astype(np.float32), get="nngp")
    np.testing.assert_allclose(a, b, rtol=1e-6)  # float32 input rounding, computed in float64


# Symmetry is checked on kernel_fn(x, x): with x2 given nothing is symmetrised, so entries (i, j)
# and (j, i) are two separate evaluations of the recursion with the inputs' roles swapped
# (kernel_fn(x) returns (K + K.T)/2 and is symmetric by construction). Exactly they are equal; in
# float64 each entry is a few hundred roundings of relative size eps/2 = 1.1e-16 of the kernel's
# scale, so the two orders can differ by ~1e-14 max|K| at most. Measured: <= 6.5e-16 max|K| over
# the examples (and <= 4.9e-16 over 75 random programs in test_kernel_properties). 1e-13 max|K|
# keeps a 150x margin; a real asymmetry (a cross term with its two inputs swapped) is >= 1e-3.
SYMMETRY_ATOL = 1e-13


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_gives_finite_symmetric_psd_kernels(path: Path) -> None:
    c = tpcompile.compile(path.read_text(), filename=str(path))
    x = rows(6, *c.ir.input.shape, 3)
    k = c.kernel_fn(x)
    cross = c.kernel_fn(x, x)
    for kind in ("nngp", "ntk"):
        m, mm = np.asarray(getattr(k, kind)), np.asarray(getattr(cross, kind))
        assert np.all(np.isfinite(m)) and np.all(np.isfinite(mm))
        atol = SYMMETRY_ATOL * np.abs(mm).max()
        np.testing.assert_allclose(mm, mm.T, rtol=0, atol=atol, err_msg=f"{kind} asymmetric")
        # kernel_fn(x) is (K + K.T)/2 of the same K: off by half the asymmetry at most
        np.testing.assert_allclose(m, mm, rtol=0, atol=atol, err_msg=kind)
        eig = np.linalg.eigvalsh(m)
        assert eig.min() >= -1e-10 * eig.max()


def test_width_averages_are_refused_with_a_location() -> None:
    src = "input x\nweight U ~ N(0, 1)\ng = U @ x\noutput layernorm(g)\n"
    with pytest.raises(TPError, match="not yet supported") as info:
        tpcompile.compile(src, filename="ln.tp")
    assert str(info.value).startswith("ln.tp:4:")


def test_numerical_quantities_are_labelled() -> None:
    c = tpcompile.compile((ROOT / "examples" / "gated.tp").read_text())
    assert "rt.mehler_pair(" in c.source and "(numerical)" in c.source  # sigmoid: Mehler series
    assert "rt.track(" not in tpcompile.compile(MLP).source  # relu: closed forms only


def test_emit_writes_a_standalone_module(tmp_path: Path, capsys) -> None:
    out = tmp_path / "k.py"
    assert main(["emit", str(ROOT / "examples" / "rnn.tp"), "-o", str(out)]) == 0
    tree = ast.parse(out.read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert imported == {"jax", "tpcompile"}
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)
    x = jax.numpy.asarray(rows(3, 5, 2))
    diag = namespace["diagonal"](x)
    nngp, ntk = namespace["cross"](x, x, diag, diag)
    assert nngp.shape == ntk.shape == (3, 3)


def test_show_prints_the_recursion(capsys) -> None:
    assert main(["show", str(ROOT / "examples" / "resnet.tp"), "-D", "L=2"]) == 0
    out = capsys.readouterr().out
    assert "NNGP = " in out and "NTK = " in out and "E[relu(u)·relu(v)](S11, S12, S22)" in out
    assert main(["show", "--latex", str(ROOT / "examples" / "mlp.tp")]) == 0
    latex = capsys.readouterr().out
    assert "NTK = " in latex and "\\operatorname{atan}_{2}" in latex


def test_kernel_command_contract(tmp_path: Path, capsys) -> None:
    x1, x2 = rows(4, 3), rows(2, 3, seed=1)
    np.save(tmp_path / "a.npy", x1)
    np.save(tmp_path / "b.npy", x2)
    out = tmp_path / "k.npz"
    src = ROOT / "examples" / "mlp.tp"
    assert (
        main(
            [
                "kernel",
                str(src),
                "--x",
                str(tmp_path / "a.npy"),
                "--x2",
                str(tmp_path / "b.npy"),
                "-D",
                "L=2",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    with np.load(out) as k:
        assert set(k.files) == {"nngp", "ntk"}
        assert k["nngp"].dtype == k["ntk"].dtype == np.float64
        assert k["ntk"].shape == (4, 2)
        expected = tpcompile.compile(MLP, params={"L": 2}).kernel_fn(x1, x2)
        np.testing.assert_allclose(k["ntk"], expected.ntk, rtol=1e-14)
        np.testing.assert_allclose(k["nngp"], expected.nngp, rtol=1e-14)


def test_kernel_command_without_data_uses_demo_inputs(capsys) -> None:
    assert main(["kernel", str(ROOT / "examples" / "rnn.tp")]) == 0
    out = capsys.readouterr().out
    assert "built-in demo inputs" in out and "NTK =" in out


def test_kernel_command_bad_data_is_exit_1(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "bad.npy", np.array([[np.nan, 1.0]]))
    assert (
        main(["kernel", str(ROOT / "examples" / "mlp.tp"), "--x", str(tmp_path / "bad.npy")]) == 1
    )
    err = capsys.readouterr().err
    assert "NaN" in err and "Traceback" not in err
    assert (
        main(["kernel", str(ROOT / "examples" / "mlp.tp"), "--x", str(tmp_path / "missing.npy")])
        == 1
    )
    assert f"--x {tmp_path / 'missing.npy'}: no such file" in capsys.readouterr().err


def test_step_output_kernel_is_exact() -> None:
    # E[step(u) step(v)] = (π - θ)/(2π): 1/2 on the diagonal; step' = 0, so NTK = NNGP.
    c = tpcompile.compile("input x\nweight U ~ N(0, 1)\nz = U @ x\noutput step(z)\n")
    x = rows(4, 3)
    k = c.kernel_fn(x)
    np.testing.assert_allclose(np.diag(k.nngp), 0.5, rtol=1e-14)
    cos = (x @ x.T) / np.sqrt(np.outer((x * x).sum(1), (x * x).sum(1)))
    np.testing.assert_allclose(
        k.nngp, (np.pi - np.arccos(np.clip(cos, -1, 1))) / (2 * np.pi), rtol=1e-7
    )  # arccos near c = 1 is ill-conditioned: ~1e-8
    np.testing.assert_array_equal(k.ntk, k.nngp)


def test_compiled_pickles_by_program_text_and_options() -> None:
    import pickle

    c = tpcompile.compile(MLP_PICKLE, params={"L": 2}, tol=1e-8)
    restored = pickle.loads(pickle.dumps(c))
    assert (restored.program_text, restored.params, restored.options) == (
        c.program_text,
        c.params,
        c.options,
    )
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_array_equal(
        np.asarray(restored.kernel_fn(x).ntk), np.asarray(c.kernel_fn(x).ntk)
    )


MLP_PICKLE = """
param L = 3
input x
weight U ~ N(0, 2)
weight W[2..L] ~ N(0, 2)
h[1] = U @ x
for l in 2..L {
    h[l] = W[l] @ tanh(h[l-1])
}
output relu(h[L])
"""


# ---- argument types at the API edge: TPError with a message, never a raw exception ---------------


@pytest.mark.parametrize(
    ("source", "message", "hint"),
    [
        (None, "compile() takes the program text as a str, got NoneType", "open('prog.tp').read()"),
        (42, "got int", "open('prog.tp').read()"),
        (Path("prog.tp"), "not a path: got", "compile(Path('prog.tp').read_text())"),
        (b"input x\xff\n", "not UTF-8 text (byte 0xff at offset 7)", "data.decode('latin-1')"),
        ("examples/mlp.tp", "", "takes program text, not a file name: open('examples/mlp.tp')"),
    ],
    ids=["None", "int", "Path", "latin-1 bytes", "a file name"],
)
def test_compile_refuses_what_is_not_program_text(source: object, message: str, hint: str) -> None:
    with pytest.raises(TPError) as info:
        tpcompile.compile(source)  # type: ignore[arg-type]
    assert message in info.value.message and hint in (info.value.hint or "")


def test_compile_decodes_bytes_as_utf8() -> None:
    c = tpcompile.compile(("\ufeff" + MLP).encode("utf-8"), params={"L": 2})  # with a BOM
    assert c.program_text == MLP
    x = rows(3, 4)
    want = tpcompile.compile(MLP, params={"L": 2}).kernel_fn(x, get="ntk")
    np.testing.assert_array_equal(c.kernel_fn(x, get="ntk"), want)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": [("L", 2)]}, "params must be a mapping of param names to values, got list"),
        ({"params": 5}, "params must be a mapping"),
        ({"params": {1: 2}}, "params keys are param names (str), got 1"),
        ({"filename": Path("x.tp")}, "filename must be a str"),
        ({"tol": "small"}, "tol must be a number in (0, 1)"),
        ({"tol": float("nan")}, "tol must be a number in (0, 1)"),
        ({"samples": 2.5}, "samples must be an int >= 4"),
        ({"method": "magic"}, "method must be one of"),
    ],
)
def test_compile_checks_its_options(kwargs: dict, message: str) -> None:
    with pytest.raises(TPError) as info:
        tpcompile.compile(MLP, **kwargs)
    assert message in info.value.message


def test_numpy_numbers_count_as_options() -> None:
    c = tpcompile.compile(MLP, tol=np.float32(1e-6), samples=np.int64(1024), seed=np.int32(3))
    assert (c.options.tol, c.options.samples, c.options.seed) == (pytest.approx(1e-6), 1024, 3)
    assert type(c.options.samples) is int


@pytest.mark.parametrize(
    ("get", "message", "hint"),
    [
        (["nngp", "nngp"], "get names `nngp` twice", "list each kernel once"),
        (5, "get must be 'nngp', 'ntk' or a tuple of them, got int 5", "get='ntk'"),
        (b"ntk", "got bytes", "get='ntk'"),
        ("NTK", "unknown kernel `NTK` in get", "did you mean `ntk`?"),
        (("nngp", 3), "unknown kernel `3` in get", "'nngp', 'ntk' or both"),
    ],
)
def test_get_is_checked(mlp: tpcompile.Compiled, get: object, message: str, hint: str) -> None:
    with pytest.raises(TPError) as info:
        mlp.kernel_fn(rows(2, 3), get=get)  # type: ignore[arg-type]
    assert message in info.value.message and hint in (info.value.hint or "")


def test_get_none_and_lists_are_accepted(mlp: tpcompile.Compiled) -> None:
    x = rows(2, 3)
    assert mlp.kernel_fn(x, get=None)._fields == ("nngp", "ntk")
    assert mlp.kernel_fn(x, get=["ntk", "nngp"])._fields == ("ntk", "nngp")


@pytest.mark.parametrize(
    ("x1", "message"),
    [
        ("abc", "x1 is a str, not an array"),
        (None, "x1 is None, not an array"),
        ({"a": 1}, "x1 is a dict, not an array"),
        ([[1.0, 2.0], [3.0]], "x1 is not a rectangular array"),
        (np.array([[1.0, None]], dtype=object), "x1 holds Python objects"),
        (np.array([["a", "b"]]), "got dtype <U1 (text)"),
    ],
)
def test_x_that_is_not_an_array_is_named(mlp: tpcompile.Compiled, x1: object, message: str) -> None:
    with pytest.raises(TPError) as info:
        mlp.kernel_fn(x1)
    assert message in info.value.message
    assert "(N, d)" in (info.value.hint or "")


def test_non_finite_entries_are_located(mlp: tpcompile.Compiled) -> None:
    x2 = rows(3, 2)
    x2[2, 1] = -np.inf
    with pytest.raises(TPError) as info:
        mlp.kernel_fn(rows(2, 2), x2)
    assert info.value.message == (
        "x2 contains NaN or infinite values (1 of 6; the first, -inf, at index [2, 1])"
    )
