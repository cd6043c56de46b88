"""Inputs that once escaped the error discipline (issue 13), one regression test each.

Every case ends in exit 0 (a valid program, whatever its encoding or nesting) or in a
`file:line:col: error:` message stating the limit it hit, with exit 1: never a traceback, a
RecursionError, a hang or a silent NaN later. The files are in `tests/corpus/bad/`, which the fuzz
test (`test_fuzz.py`) reuses.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy

import tpcompile.lang.limits as limits
from tpcompile import TPError, ir, load_program
from tpcompile.cli import main
from tpcompile.lang.frontend import read_source
from tpcompile.lang.values import ProgramBuilder, _read_affine

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "bad"
HEAD = "input x\nweight U ~ N(0, 1)\n"
PROGRAM = HEAD + "output relu(U @ x)\n"

# file -> (exit code, fragment of the first line of stderr: location and message)
EXPECTED = {
    "non_utf8_random_bytes.tp": (1, ":1:1: error: byte 0x84 is not valid UTF-8"),
    "non_utf8_latin1_comment.tp": (1, ":1:4: error: byte 0xe9 is not valid UTF-8"),
    "non_utf8_latin1_name.tp": (1, ":3:2: error: byte 0xe9 is not valid UTF-8"),
    "nul_bytes.tp": (1, ":3:16: error: unexpected character U+0000"),
    "utf8_bom.tp": (0, ""),
    "utf8_bom_crlf.tp": (0, ""),
    "utf16_bom.tp": (0, ""),
    "cr_line_ends.tp": (0, ""),
    "bom_only.tp": (1, "error: the program has no `input`"),
    "empty.tp": (1, "error: the program has no `input`"),
    "nested_calls_333.tp": (1, ":3:503: error: calls nest more than 100 levels deep"),
    "nested_parens_5000.tp": (0, ""),
    "nested_loops_150.tp": (1, ":103:1: error: loops nest more than 100 levels deep"),
    "sum_1000_terms.tp": (0, ""),
    "defs_exponential.tp": (1, ":42:8: error: this expression composes functions more than 120"),
    "defs_linear_doubling.tp": (1, ":42:13: error: unrolling the program takes more than 1000000"),
    "assignments_doubling.tp": (1, ":16:7: error: this expression grows to more than 20000 terms"),
    "recurrence_300.tp": (1, ":5:12: error: this expression composes functions more than 120"),
    "nested_loops_empty.tp": (1, ":3:30: error: the loops run more than 1000000 iterations"),
    "variance_1e400.tp": (1, ":2:17: error: the variance 1.00e+400 is too large for float64"),
    "bias_mean_1e400.tp": (1, ":3:12: error: the mean 1.00e+400 is too large for float64"),
    "readout_1e400.tp": (1, ":3:16: error: the variance 1.00e+400 is too large for float64"),
    "coefficient_1e400.tp": (1, ":3:8: error: the coefficient 1.00e+400 is too large"),
    "coefficient_exp_1000.tp": (1, ":3:22: error: this number is out of range"),
    "number_5000_digits.tp": (1, ":3:22: error: the number 77777777777777777777... is out of"),
    "number_not_real.tp": (1, ":3:22: error: a negative number to a fractional power"),
    "input_1e8_positions.tp": (1, ":1:1: error: the input has 100000000 positions, more than"),
    "input_20_axes.tp": (1, ":1:1: error: the input has 20 index ranges, more than the limit"),
    "family_1e8.tp": (1, ":3:1: error: the family `W` has 100000000 elements, more than"),
    "loop_bound_huge.tp": (1, ":4:10: error: the range 1..1.00e+300 has more than 50000"),
    "polynomial_power_64.tp": (0, ""),
    "unicode_minus.tp": (1, ":3:20: error: unexpected character `−` U+2212 (MINUS SIGN)"),
    "no_break_space.tp": (1, ":3:7: error: unexpected character U+00A0 (NO-BREAK SPACE)"),
    "file_name_as_text.tp": (1, ":1:9: error: unexpected `/`"),
}


def check(path: Path | str) -> tuple[int, str]:
    """`tpcompile check PATH` in-process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", str(path)])
    return code, err.getvalue()


def message(source: str | bytes, **params: object) -> str:
    with pytest.raises(TPError) as info:
        load_program(source, params or None, filename="p.tp")
    return str(info.value)


def test_corpus_is_complete() -> None:
    assert {p.name for p in CORPUS.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_case(name: str) -> None:
    start = time.perf_counter()
    code, err = check(CORPUS / name)
    assert time.perf_counter() - start < 30
    expected_code, fragment = EXPECTED[name]
    assert code == expected_code, err
    assert "Traceback" not in err and "internal error" not in err
    if code:
        first = err.splitlines()[0]
        assert first.startswith(str(CORPUS / name)) and fragment in first, err


# ---- 1. encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        PROGRAM.encode(),
        b"\xef\xbb\xbf" + PROGRAM.encode(),
        PROGRAM.replace("\n", "\r\n").encode(),
        PROGRAM.replace("\n", "\r").encode(),
        "\ufeff".encode("utf-16-le") + PROGRAM.encode("utf-16-le"),
        "\ufeff".encode("utf-16-be") + PROGRAM.encode("utf-16-be"),
        ("# réseau — ∑\n" + PROGRAM).encode(),
    ],
    ids=["utf8", "bom", "crlf", "cr", "utf16le", "utf16be", "non-ascii-comment"],
)
def test_every_encoding_means_the_same(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "p.tp"
    path.write_bytes(data)
    expected = ir.format_program(load_program(PROGRAM))
    assert ir.format_program(load_program(read_source(path))) == expected
    assert ir.format_program(load_program(data)) == expected  # bytes straight to the front end


def test_text_with_bom_and_crlf_from_python() -> None:
    text = "\ufeff" + PROGRAM.replace("\n", "\r\n")
    assert ir.format_program(load_program(text)) == ir.format_program(load_program(PROGRAM))


def test_undecodable_byte_is_located(tmp_path: Path) -> None:
    path = tmp_path / "p.tp"
    path.write_bytes(HEAD.encode() + b"h = relu(U @ x)  # caf\xe9\noutput h\n")
    with pytest.raises(TPError) as info:
        read_source(path)
    text = str(info.value)
    assert text.startswith(f"{path}:3:23: error: byte 0xe9 is not valid UTF-8")
    assert "iconv" in text and "^" in text


def test_files_are_utf8_under_an_ascii_locale(tmp_path: Path) -> None:
    """Not the locale's encoding: a UTF-8 program compiles in the C locale without coercion."""
    path = tmp_path / "p.tp"
    path.write_text("# réseau — naïve\n" + PROGRAM, encoding="utf-8")
    bad = tmp_path / "bad.tp"
    bad.write_text("# ü\n" + HEAD + "output relü(U @ x)\n", encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    code = "import sys; from tpcompile.cli import main; sys.exit(main(sys.argv[1:]))"
    ok = subprocess.run([sys.executable, "-c", code, "check", str(path)], env=env, check=False)
    assert ok.returncode == 0
    run = subprocess.run(
        [sys.executable, "-c", code, "check", str(bad)], env=env, capture_output=True, check=False
    )
    assert run.returncode == 1 and b"Traceback" not in run.stderr
    assert b":4:11: error: unexpected character" in run.stderr
    # Printing the IR's `n×d` to an ASCII stdout: escaped, not a UnicodeEncodeError (exit 3).
    ir = subprocess.run(
        [sys.executable, "-c", code, "ir", str(path)], env=env, capture_output=True, check=False
    )
    assert ir.returncode == 0 and b"n\\xd7d" in ir.stdout


def test_program_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_SOURCE", 1000)
    path = tmp_path / "data.tp"
    path.write_bytes(b"#" * 5000)
    code, err = check(path)
    assert code == 1 and "longer than the limit of 1000 characters" in err
    assert "longer than the limit" in message("#" * 5000)


def test_unreadable_path() -> None:
    code, err = check(ROOT / "tests" / "corpus")
    assert code == 1 and "cannot read" in err and "directory" in err


# ---- 2. depth ----------------------------------------------------------------------------------


def test_long_flat_sum_compiles_fast() -> None:
    start = time.perf_counter()
    program = load_program(
        HEAD + "g = U @ x\nh = " + " + ".join(["g"] * 5000) + "\noutput relu(h)\n"
    )
    assert time.perf_counter() - start < 10
    (lincomb,) = [i for i in program.instrs if i.out == "h"]
    assert lincomb.terms == ((5000, "g"),)


def test_long_chains_keep_left_to_right_meaning() -> None:
    program = load_program(
        HEAD + "param a = 64 / 2 / 2 - 1 - 1 * 3 + 10 % 4\n" + "output relu(U @ x)\n"
    )
    assert program.params["a"] == 14  # as in Python: ((64 / 2) / 2 - 1) - 1 * 3 + 10 % 4


def test_nesting_limit_is_stated() -> None:
    ok = HEAD + "output " + "relu(" * 97 + "U @ x" + ")" * 97 + "\n"
    load_program(ok)
    text = message(HEAD + "output " + "relu(" * 333 + "U @ x" + ")" * 333 + "\n")
    assert "calls nest more than 100 levels deep" in text and "name intermediate values" in text


def test_nested_defs_are_limited() -> None:
    defs = "".join(f"def f{i}(z) = -f{i - 1}(z)\n" for i in range(2, 80))
    text = message(HEAD + "def f1(z) = -z\n" + defs + "output relu(f79(U @ x))\n")
    assert "p.tp:" in text and "expressions nest more than 100 levels deep" in text
    assert "(inlining `f79`)" in text


def test_composed_expressions_are_limited() -> None:
    chain = HEAD + "h[1] = tanh(U @ x)\nfor t in 2..{T} {{ h[t] = tanh(h[t-1]) }}\noutput h[{T}]\n"
    load_program(chain.format(T=119))
    assert "composes functions more than 120 deep" in message(chain.format(T=121))


def test_recursion_error_is_a_tperror(monkeypatch: pytest.MonkeyPatch) -> None:
    """The net under the limits: with them lifted, Python's recursion limit is still an error."""
    monkeypatch.setattr(limits, "MAX_NESTING", 10**6)
    text = message(HEAD + "output " + "relu(" * 3000 + "U @ x" + ")" * 3000 + "\n")
    assert "nests too deeply" in text


# ---- 3. work -----------------------------------------------------------------------------------


def test_nested_empty_loops_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_STEPS", 100_000)
    start = time.perf_counter()
    text = message(HEAD + "for i in 1..40000 { for j in 1..40000 { } }\noutput relu(U @ x)\n")
    assert time.perf_counter() - start < 5
    assert "p.tp:3:30: error: the loops run more than 100000 iterations in total" in text


def test_exponential_inlining_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_STEPS", 50_000)
    defs = "".join(f"def g{i}(z) = g{i - 1}(z) + g{i - 1}(z)\n" for i in range(2, 40))
    text = message(HEAD + "def g1(z) = z + z\n" + defs + "output relu(g39(U @ x))\n")
    assert "unrolling the program takes more than 50000 steps (inlining `g39`)" in text


# ---- 4. numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decl", "fragment"),
    [
        ("weight V ~ N(0, 1e400)", "the variance 1.00e+400 is too large for float64"),
        ("weight V ~ N(0, 10 ** 200 * 10 ** 200)", "the variance 1.00e+400 is too large"),
        ("bias V ~ N(-1e309, 1)", "the mean -1.00e+309 is too large for float64"),
        ("readout ~ N(0, 1) + N(0, 1e400)", "the variance 1.00e+400 is too large"),
        ("h = relu(U @ x) * 2 ** 399 * 2 ** 399", "the coefficient 1.07e+240"),
        ("h = relu(U @ x) + 1e309", "the coefficient 1.00e+309 is too large"),
        ("h = relu(U @ x) * sqrt(-1)", "this is not a real number"),
    ],
)
def test_numbers_must_be_finite_floats(decl: str, fragment: str) -> None:
    if "2 ** 399" in decl:  # 2**798 ≈ 1.07e+240 is fine; one more factor is not
        load_program(HEAD + decl + "\noutput h\n")
        decl, fragment = decl + " * 1e100", "the coefficient 1.67e+340 is too large"
    assert fragment in message(HEAD + decl + "\noutput relu(U @ x)\n")


def test_huge_exact_numbers_are_fine_inside_the_limits() -> None:
    program = load_program(HEAD + "weight V ~ N(0, 1e400 / 1e399)\noutput relu(V @ relu(U @ x))\n")
    assert program.weights[1].var == 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(5), 5),
        (np.int32(3), 3),
        (np.float64(2.5), sympy.Rational(5, 2)),
        (np.float32(0.1), sympy.Rational(1, 10)),
        (Fraction(1, 3), sympy.Rational(1, 3)),
        ("1/3", sympy.Rational(1, 3)),
        (" 2.5e-3 ", sympy.Rational(1, 400)),
    ],
)
def test_param_overrides_accept_numpy_scalars(value: object, expected: sympy.Expr) -> None:
    program = load_program("param L = 1\n" + PROGRAM, {"L": value})
    assert program.params["L"] == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "got the boolean True"),
        (np.bool_(True), "got the boolean"),
        (float("inf"), "must be a finite number"),
        (np.float64("nan"), "must be a finite number"),
        ("1e999999999", "out of range"),
        (10**1000, "out of range (more than 400 digits)"),
        ("0x10", "must be a number"),
        (None, "must be a number"),
        (1 + 2j, "must be a number"),
    ],
)
def test_param_overrides_reject(value: object, fragment: str) -> None:
    text = message("param L = 1\n" + PROGRAM, L=value)
    assert "param `L`" in text and fragment in text


# ---- 5. sizes ----------------------------------------------------------------------------------


def test_input_positions_are_bounded() -> None:
    image = "input x[1..256, 1..256]\nweight U ~ N(0, 1)\noutput relu(U @ x[1, 1])\n"
    assert load_program(image).input.positions == 65_536
    text = message(image.replace("256, ", "257, "))
    assert "the input has 65792 positions, more than the limit of 65536" in text
    assert "256×256 image" in text


# ---- 6. a file name given as program text ------------------------------------------------------


@pytest.mark.parametrize("text", ["prog.tp", "examples/mlp.tp", str(ROOT / "examples" / "mlp.tp")])
def test_file_name_instead_of_text(text: str) -> None:
    rendered = message(text)
    assert f"`{text}` looks like a file name, not program text" in rendered
    assert "read_text()" in rendered


def test_program_must_be_text() -> None:
    assert "the program must be text (a str), not NoneType" in message(None)  # type: ignore[arg-type]
    text = message(ROOT / "examples" / "mlp.tp")  # type: ignore[arg-type]
    assert "not PosixPath" in text and "read_source" in text


# ---- error rendering details -------------------------------------------------------------------


def test_caret_under_the_character_after_tabs_and_form_feeds() -> None:
    text = message(HEAD + "h = U @ x\n\t\th2 = $\noutput h\n")
    lines = text.splitlines()
    assert lines[0] == "p.tp:4:8: error: unexpected character `$`"
    assert lines[2].index("^") == lines[1].index("$")
    text = message(HEAD + "h = U @ x\f$\noutput h\n")
    lines = text.splitlines()
    assert lines[0].startswith("p.tp:3:11:") and lines[2].index("^") == lines[1].index("$")


def test_lookalike_characters_get_a_hint() -> None:
    assert "write `-`" in message(HEAD + "output relu(U @ x) \u2212 1\n")
    assert "byte-order mark" in message(HEAD + "\ufeffoutput relu(U @ x)\n")


def test_affine_fast_path_agrees_with_sympy() -> None:
    """`_read_affine` (the fast path of `ProgramBuilder.affine`) against diff/subs."""
    g1, g2, g3 = (ir.symbol(n) for n in ("a", "b", "c"))
    builder = ProgramBuilder()
    builder.kinds.update(a="G", b="G", c="G")
    for expr in [g1, 3 * g1 - g2 / 7 + 2, g1 + g2 + g3 - sympy.Rational(1, 3), -g3, 5 - g1]:
        names = builder._args(expr)
        terms, const = _read_affine(expr, names)
        assert terms == tuple((sympy.diff(expr, ir.symbol(n)), n) for n in names)
        assert const == expr.subs({ir.symbol(n): 0 for n in names})
    assert _read_affine(sympy.sqrt(2) * (g1 + g2), ("a", "b")) is None  # left to the slow path
