"""Bad files, bad paths and big inputs at the CLI: every one a clean exit 1 with a message naming
the flag and the file, never an internal error (exit 3) or a half-written output; and the CLI's
persistent compilation cache, which lives in the user's cache folder and nowhere else.

Every test here points $XDG_CACHE_HOME at its own temporary folder, so no test writes into the
real ~/.cache.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

import tpcompile
from tpcompile import files
from tpcompile.cli import main

ROOT = Path(__file__).resolve().parent.parent
MLP = str(ROOT / "examples" / "mlp.tp")
RNN = str(ROOT / "examples" / "rnn.tp")


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("TPCOMPILE_NO_CACHE", raising=False)
    monkeypatch.delenv("TPCOMPILE_MEMORY_LIMIT", raising=False)
    return home


@pytest.fixture()
def arrays(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    paths = {}
    for name, value in {
        "x": rng.normal(size=(3, 4)),
        "x5": rng.normal(size=(2, 5)),
        "nan": np.array([[1.0, 2.0, 3.0, 4.0], [1.0, np.inf, 0.0, 0.0]]),
        "y": rng.normal(size=3),
    }.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], value)
    paths["npz"] = tmp_path / "data.npz"
    np.savez(paths["npz"], inputs=np.ones((3, 4)), labels=np.ones(3))
    paths["text"] = tmp_path / "table.txt"
    paths["text"].write_text("1 2 3 4\n5 6 7 8\n")
    paths["empty"] = tmp_path / "empty.npy"
    paths["empty"].write_bytes(b"")
    paths["objects"] = tmp_path / "objects.npy"
    np.save(paths["objects"], np.array([{}, 1], dtype=object), allow_pickle=True)
    return paths


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


# ---- output paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["kernel", MLP, "-o"],
        ["emit", MLP, "-o"],
        ["predict", MLP, "--train", "{x}", "--y", "{y}", "-o"],
        ["verify", MLP, "--plot"],
    ],
    ids=["kernel", "emit", "predict", "verify"],
)
def test_output_into_a_missing_folder_is_exit_1(
    command: list[str], arrays: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(x=arrays["x"], y=arrays["y"]) for a in command]
    target = tmp_path / "missing" / "out.png"
    code, err = run([*args, str(target)], capsys)
    assert code == 1, err
    flag = args[-1]
    assert f"{flag} {target}: the folder {target.parent} does not exist" in err
    assert "internal error" not in err and not target.parent.exists()


@pytest.mark.parametrize("command", [["kernel", MLP], ["emit", MLP]], ids=["kernel", "emit"])
def test_output_onto_a_folder_is_exit_1(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "k.npz"  # a folder with the name the output would have
    folder.mkdir()
    code, err = run([*command, "-o", str(folder)], capsys)
    assert code == 1 and f"-o {folder}: is a folder" in err
    assert folder.is_dir() and not any(folder.iterdir())


def test_outputs_are_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k.npz"
    out.write_bytes(b"the previous result")
    os.chmod(out, 0o640)

    def fail(*args: object, **kwargs: object) -> None:
        Path(args[0]).write_bytes(b"half a file")  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    savez = np.savez
    monkeypatch.setattr(np, "savez", fail)
    code, err = run(["kernel", MLP, "-o", str(out)], capsys)
    assert code == 1 and "No space left on device" in err
    assert out.read_bytes() == b"the previous result"  # untouched, not truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache-home", "k.npz"]  # no temp file
    monkeypatch.setattr(np, "savez", savez)
    assert main(["kernel", MLP, "-o", str(out)]) == 0
    with np.load(out) as k:
        assert k["ntk"].shape == (4, 4)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the replaced file keeps its mode
    fresh = tmp_path / "fresh.py"
    assert main(["emit", MLP, "-o", str(fresh)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # as open() would make it


# ---- input arrays -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("npz", "an .npz archive (arrays: inputs, labels); expected one .npy array of shape"),
        ("text", "not a .npy file"),
        ("empty", "an empty file"),
        ("objects", "holds Python objects"),
        ("nan", "contains NaN or infinite values (1 of 8; the first, inf, at index [1, 1])"),
        ("x5", "has shape (2, 5); `input x` needs (N, 5, d)"),
    ],
)
def test_array_errors_name_the_flag_and_the_file(
    name: str, message: str, arrays: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    program = RNN if name == "x5" else MLP
    code, err = run(["kernel", program, "--x", str(arrays[name])], capsys)
    assert code == 1, err
    assert err.startswith(f"tpcompile: error: --x {arrays[name]}: "), err
    assert message in err
    assert "<string>" not in err and "x1" not in err and "pickle" not in err


def test_npz_and_text_errors_say_how_to_fix_them(
    arrays: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, err = run(["kernel", MLP, "--x", str(arrays["npz"])], capsys)
    fix = f"np.save('inputs.npy', np.load('{arrays['npz']}')['inputs'])"
    assert f"hint: save the array you mean as .npy: {fix}" in err
    _, err = run(["kernel", MLP, "--x", str(arrays["text"])], capsys)
    assert f"np.loadtxt('{arrays['text']}')" in err


def test_second_batch_and_predict_arrays_are_named(
    arrays: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(["kernel", MLP, "--x", str(arrays["x"]), "--x2", str(arrays["x5"])], capsys)
    assert (
        code == 1 and f"--x2 {arrays['x5']}: data dimension 5, but --x {arrays['x']} has 4" in err
    )
    code, err = run(["kernel", MLP, "--x2", str(tmp_path / "nope.npy")], capsys)
    assert code == 1 and f"--x2 {tmp_path / 'nope.npy'}: no such file" in err
    args = ["predict", MLP, "--train", str(arrays["x"]), "--y", str(arrays["y"])]
    code, err = run([*args, "--test", str(arrays["nan"])], capsys)
    assert code == 1 and f"--test {arrays['nan']}: contains NaN" in err
    code, err = run([*args[:5], str(arrays["npz"])], capsys)
    assert code == 1 and f"--y {arrays['npz']}: an .npz archive" in err and "(N,) or (N, k)" in err


# ---- sizes --------------------------------------------------------------------------------------

HUGE = "input x[1..100000000]\nweight U ~ N(0, 1)\noutput relu(U @ x[1])\n"


def test_demo_inputs_are_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.tp"
    path.write_text(HUGE)
    code, err = run(["kernel", str(path)], capsys)  # refused (by the language or the demo bound)
    assert code == 1 and "error:" in err and "internal error" not in err, err
    # the demo bound itself, on an input the language might one day accept
    from tpcompile.errors import Span
    from tpcompile.inputs import DEMO_LIMIT, demo_inputs
    from tpcompile.ir import Input

    program = SimpleNamespace(input=Input("x", (10**8,), (1,), Span.point(1, 1)))
    with pytest.raises(tpcompile.TPError, match=r"would have shape \(4, 100000000, 3\)") as e:
        demo_inputs(program)  # type: ignore[arg-type]
    assert "--x A.npy, an array of shape (N, 100000000, d)" in (e.value.hint or "")
    fits = SimpleNamespace(input=Input("x", (DEMO_LIMIT // 12,), (1,), Span.point(1, 1)))
    assert demo_inputs(fits).shape == (4, DEMO_LIMIT // 12, 3)  # type: ignore[arg-type]


def test_kernels_that_cannot_fit_are_refused_before_allocating(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    c = tpcompile.compile(Path(MLP).read_text())

    def allocate(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated despite the memory estimate")

    x = np.random.default_rng(0).normal(size=(300, 4))
    monkeypatch.setenv("TPCOMPILE_MEMORY_LIMIT", "1M")
    monkeypatch.setattr(c, "_kernels", allocate)
    with pytest.raises(tpcompile.TPError, match=r"the kernels of 300 × 300 inputs need about") as e:
        c.kernel_fn(x)
    assert isinstance(e.value, tpcompile.errors.ResourceLimitError)
    assert "more than the 1.0 MB of $TPCOMPILE_MEMORY_LIMIT" in e.value.message
    assert "blocks of rows" in (e.value.hint or "")
    monkeypatch.delenv("TPCOMPILE_MEMORY_LIMIT")
    monkeypatch.setattr(c, "_kernels", type(c)._kernels.__get__(c))
    assert c.kernel_fn(x[:5], get="nngp").shape == (5, 5)  # the real limit: this fits


def test_memory_estimate_and_limit() -> None:
    from tpcompile.resources import KernelSize, memory_limit

    size = KernelSize(pair_quantities=10, input_quantities=4, expansions=1)
    grids = 100 * 200 * (10 + 8)
    per_input = 300 * (2 * 5 * 3 + 4 + 256)
    assert size.bytes(100, 200, positions=5, dim=3, itemsize=8) == 8 * (grids + per_input)
    limit = memory_limit()
    assert limit is not None and limit[0] > 0  # Linux: MemAvailable, or the physical memory


@pytest.mark.parametrize("value", ["lots", "-5", "0"])
def test_a_bad_memory_limit_is_a_clear_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPCOMPILE_MEMORY_LIMIT", value)
    c = tpcompile.compile(Path(MLP).read_text())
    with pytest.raises(tpcompile.TPError, match="TPCOMPILE_MEMORY_LIMIT"):
        c.kernel_fn(np.ones((2, 3)))


def test_check_reports_the_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", RNN]) == 0
    out = capsys.readouterr().out
    assert "size: " in out and "instructions; input x: 5 positions, 25 position pairs read" in out
    assert "kernel quantities not counted (--size runs the kernel analysis)" in out
    assert main(["check", "--size", RNN]) == 0
    out = capsys.readouterr().out
    assert "kernel quantities: " in out and "per pair of inputs" in out and "numerical: " in out
    c = tpcompile.compile(Path(RNN).read_text())
    assert f"kernel quantities: {len(c.graph.nodes)} ({c.size.pair_quantities} per pair" in out


# ---- the compilation cache ----------------------------------------------------------------------


def test_kernel_commands_use_a_persistent_cache_in_the_users_cache_folder(
    cache_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = cache_home / "tpcompile" / "jax"
    assert files.cache_folder() == folder
    # a program of its own: compiled for the first time in this process, whatever ran before
    program = cache_home.parent / "cached.tp"
    program.write_text(Path(MLP).read_text().replace("relu", "erf"))
    assert main(["kernel", str(program)]) == 0
    assert folder.is_dir() and any(folder.iterdir())
    # only for the command: JAX's configuration is as before, and new compilations stay out
    assert jax.config.jax_compilation_cache_dir is None
    before = set(folder.iterdir())
    saved = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # would keep anything
    try:
        assert float(jax.jit(lambda v: jax.numpy.sin(v) * 3.25 + 1)(2.0)) == pytest.approx(
            3.9552166
        )
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", saved)
    assert set(folder.iterdir()) == before


@pytest.mark.parametrize("opt_out", ["flag", "env"])
def test_the_cache_can_be_turned_off(
    opt_out: str, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if opt_out == "env":
        monkeypatch.setenv("TPCOMPILE_NO_CACHE", "1")
    assert main(["kernel", MLP, *(["--no-cache"] if opt_out == "flag" else [])]) == 0
    assert not cache_home.exists()


def test_check_and_emit_never_create_a_cache(cache_home: Path, tmp_path: Path) -> None:
    assert main(["check", MLP]) == 0
    assert main(["emit", MLP, "-o", str(tmp_path / "k.py")]) == 0
    assert not cache_home.exists()
