"""Every user mistake gets `file:line:col: error: message`, the source line, a caret and a hint
where one helps; the CLI exits 1 and never prints a Python traceback."""

from __future__ import annotations

import re

import pytest

from tpcompile import TPError, load_program
from tpcompile.cli import main

HEAD = "input x\nweight U ~ N(0, 1)\nweight W ~ N(0, 1)\n"

# (id, program, expected message fragment, line, column, hint fragment or None)
CASES = [
    (
        "syntax-unexpected-token",
        HEAD + "h = U @ x +\noutput relu(h)\n",
        "unexpected end of line",
        4,
        12,
        "wrap a long expression",
    ),
    (
        "syntax-bad-char",
        HEAD + "h = U @ x $ 2\noutput h\n",
        "unexpected character `$`",
        4,
        11,
        None,
    ),
    ("syntax-eof", HEAD + "h = relu(U @ x\n", "unexpected end of the program", 4, 15, "missing"),
    (
        "syntax-missing-brace",
        HEAD + "for l in 1..2 {\n h[l] = U @ x\n",
        "unexpected end",
        5,
        14,
        "missing",
    ),
    ("syntax-single-equals", HEAD + "h = U @ x\noutput h = h\n", "unexpected `=`", 5, 10, "=="),
    (
        "unknown-name",
        HEAD + "h = rleu(U @ x)\noutput h\n",
        "unknown name `rleu`",
        4,
        5,
        "did you mean `relu`?",
    ),
    (
        "unknown-name-value",
        HEAD + "h = U @ x\noutput relu(hh)\n",
        "unknown name `hh`",
        5,
        13,
        "did you mean `h`?",
    ),
    (
        "use-before-definition",
        HEAD + "g = W @ relu(h)\nh = U @ x\noutput g\n",
        "`h` is used before it is defined (line 5)",
        4,
        14,
        None,
    ),
    (
        "weight-declared-after-use",
        "input x\nh = V @ x\nweight V ~ N(0, 1)\noutput h\n",
        "`V` is used before it is defined (line 3)",
        2,
        5,
        None,
    ),
    (
        "assigned-twice",
        HEAD + "h = U @ x\nh = W @ relu(h)\noutput h\n",
        "`h` is assigned twice (first at line 4)",
        5,
        1,
        "single-assignment",
    ),
    (
        "assigned-twice-in-loop",
        HEAD + "for t in 1..2 {\n  h = U @ x\n}\noutput h\n",
        "`h` is assigned twice",
        5,
        3,
        "index the name",
    ),
    (
        "index-out-of-range",
        "input x\nweight W[1..3] ~ N(0, 1)\nh = W[4] @ x\noutput h\n",
        "index 4 is outside the declared range 1..3 of `W`",
        3,
        7,
        None,
    ),
    (
        "input-index-out-of-range",
        "param T = 3\ninput x[1..T]\nweight U ~ N(0, 1)\nh = U @ x[T + 1]\noutput h\n",
        "index 4 is outside the declared range 1..3 of `x`",
        4,
        11,
        None,
    ),
    (
        "non-integer-index",
        "input x\nweight W[1..3] ~ N(0, 1)\nh = W[1.5] @ x\noutput h\n",
        "must be an integer, got 3/2",
        3,
        7,
        None,
    ),
    (
        "non-constant-index",
        HEAD + "g = U @ x\nh[g] = g\noutput h[1]\n",
        "must be a compile-time integer, not a vector",
        5,
        3,
        None,
    ),
    (
        "non-integer-loop-bound",
        HEAD + "param T = 2.5\nfor t in 1..T {\n h[t] = U @ x\n}\noutput h[1]\n",
        "must be an integer, got 5/2",
        5,
        13,
        None,
    ),
    (
        "data-not-through-matmul",
        HEAD + "h = relu(x)\noutput h\n",
        "data `x` used in `relu`",
        4,
        10,
        "only through a matmul",
    ),
    (
        "data-plus-number",
        HEAD + "h = U @ (x + 1)\noutput h\n",
        "data `x` used in `+`",
        4,
        10,
        "only through a matmul",
    ),
    (
        "matrix-on-data-and-hidden",
        HEAD + "h = U @ x\ng = U @ relu(h)\noutput g\n",
        "`U` is applied to hidden vectors here but to data at line 4",
        5,
        5,
        "declare separate weights",
    ),
    (
        "matrix-as-value",
        HEAD + "h = U @ x\noutput relu(W + h)\n",
        "the matrix `W` is used as a value",
        5,
        13,
        "W @ h",
    ),
    (
        "matrix-assigned",
        HEAD + "V = W\noutput U @ x\n",
        "`V` is assigned the matrix `W`",
        4,
        5,
        None,
    ),
    (
        "matmul-of-scalar",
        HEAD + "h = U @ x\ng = W @ avg(h)\noutput g\n",
        "matmul of a scalar",
        5,
        9,
        None,
    ),
    ("matmul-of-number", HEAD + "g = W @ 2\noutput g\n", "matmul of a number", 4, 9, None),
    (
        "left-of-matmul",
        HEAD + "h = U @ x\ng = h @ h\noutput g\n",
        "the left side of `@` must be a weight matrix, not a vector",
        5,
        5,
        None,
    ),
    ("no-output", HEAD + "h = U @ x\n", "the program has no `output`", None, None, "output"),
    (
        "two-outputs",
        HEAD + "h = U @ x\noutput h\noutput relu(h)\n",
        "a second `output`",
        6,
        1,
        "exactly one",
    ),
    (
        "output-in-loop",
        HEAD + "for t in 1..2 {\n output U @ x\n}\n",
        "`output` inside a loop",
        5,
        2,
        "top level",
    ),
    (
        "unknown-nonlinearity",
        HEAD + "h = U @ x\noutput softmaxx(h)\n",
        "unknown name `softmaxx`",
        5,
        8,
        None,
    ),
    (
        "wrong-arity",
        HEAD + "h = U @ x\noutput relu(h, h)\n",
        "`relu` takes 1 argument, got 2",
        5,
        8,
        None,
    ),
    (
        "wrong-arity-leaky",
        HEAD + "h = U @ x\noutput leaky_relu(h)\n",
        "`leaky_relu` takes 2 arguments, got 1",
        5,
        8,
        None,
    ),
    ("bad-number-argument", HEAD + "h = U @ x\noutput relu_pow(h, 1.5)\n", "relu_pow", 5, 8, None),
    ("division-by-vector", HEAD + "h = U @ x\noutput 1 / h\n", "division by a vector", 5, 12, None),
    ("division-by-zero", HEAD + "h = U @ x\noutput h / 0\n", "division by zero", 5, 12, None),
    (
        "weight-mean",
        "input x\nweight U ~ N(1, 1)\noutput U @ x\n",
        "weights have mean 0",
        2,
        12,
        "variance",
    ),
    (
        "negative-variance",
        "input x\nweight U ~ N(0, -1)\noutput U @ x\n",
        "a variance must be a number >= 0",
        2,
        17,
        None,
    ),
    (
        "not-a-distribution",
        "input x\nweight U ~ 3\noutput U @ x\n",
        "expected a distribution N(mean, var)",
        2,
        12,
        None,
    ),
    (
        "readout-mean",
        "input x\nweight U ~ N(0, 1)\nreadout ~ N(1, 1)\noutput U @ x\n",
        "the readout must have mean 0",
        3,
        11,
        "BP-like",
    ),
    (
        "family-unindexed",
        "input x\nweight W[1..2] ~ N(0, 1)\noutput W @ x\n",
        "`W` is a family; index it",
        3,
        8,
        None,
    ),
    ("not-a-family", HEAD + "output U[1] @ x\n", "`U` is not indexed", 4, 8, None),
    ("number-assigned", HEAD + "a = 3\noutput U @ x\n", "`a` is assigned a number", 4, 5, "param"),
    (
        "redefine-builtin",
        HEAD + "def relu(z) = z\noutput U @ x\n",
        "`relu` is a builtin and cannot be redefined",
        4,
        1,
        None,
    ),
    (
        "comparison-outside-filter",
        HEAD + "h = U @ x\noutput relu(h < 1)\n",
        "a comparison outside a filter",
        5,
        13,
        None,
    ),
    (
        "empty-sum",
        HEAD + "h = U @ x\noutput sum(h for i in 1..2 if i > 5)\n",
        "has no terms",
        5,
        8,
        None,
    ),
    (
        "sum-without-comprehension",
        HEAD + "h = U @ x\noutput sum(h)\n",
        "`sum` takes a comprehension",
        5,
        8,
        None,
    ),
    ("vector-power", HEAD + "h = U @ x\noutput h ** 0.5\n", "a vector's power", 5, 13, None),
    ("unknown-override", HEAD + "output U @ x\n", "no param named", None, None, None),
    (
        "scalar-output",
        HEAD + "h = U @ x\noutput avg(h)\n",
        "the output must be a vector",
        5,
        8,
        None,
    ),
    (
        "recursive-def",
        HEAD + "def f(z) = f(z)\noutput f(U @ x)\n",
        "`f` calls itself",
        4,
        12,
        "no recursion",
    ),
    (
        "second-input",
        "input x\ninput y\nweight U ~ N(0, 1)\noutput U @ x\n",
        "a second `input`",
        2,
        1,
        None,
    ),
    (
        "no-input",
        "weight U ~ N(0, 1)\nbias b ~ N(0, 1)\noutput relu(b)\n",
        "no `input`",
        None,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("program", "message", "line", "col", "hint"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_error_table(
    program: str, message: str, line: int | None, col: int | None, hint: str | None
) -> None:
    params = (
        {"nope": 1} if program[-13:] == "output U @ x\n" and message == "no param named" else None
    )
    with pytest.raises(TPError) as info:
        load_program(program, params, filename="prog.tp")
    err = info.value
    text = str(err)
    assert message in err.message, text
    if line is not None:
        assert text.startswith(f"prog.tp:{line}:{col}: error: "), text
        source_line = program.splitlines()[line - 1] if line <= len(program.splitlines()) else ""
        lines = text.splitlines()
        assert lines[1] == "    " + source_line.rstrip()
        caret = lines[2]
        assert caret.strip().startswith("^") and caret.index("^") == 4 + col - 1, text
    else:
        assert text.startswith("prog.tp: error: "), text
    if hint is not None:
        assert "hint: " in text and hint in text, text


def test_cli_errors_exit_1_without_traceback(tmp_path, capsys) -> None:
    for name, program, *_ in CASES:
        if name == "unknown-override":
            continue
        path = tmp_path / f"{name}.tp"
        path.write_text(program)
        assert main(["check", str(path)]) == 1, name
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out, name
        assert re.match(rf"{re.escape(str(path))}(:\d+:\d+)?: error: ", captured.err), name


def test_cli_unknown_override(tmp_path, capsys) -> None:
    path = tmp_path / "p.tp"
    path.write_text("param L = 2\n" + HEAD + "output U @ x\n")
    assert main(["check", str(path), "-D", "LL=3"]) == 1
    err = capsys.readouterr().err
    assert "no param named `LL`" in err and "did you mean `L`?" in err


def test_cli_missing_file(capsys) -> None:
    assert main(["check", "/nonexistent/p.tp"]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_internal_error_exit_3(monkeypatch, tmp_path, capsys) -> None:
    import tpcompile.cli as cli

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "load_program", boom)
    path = tmp_path / "p.tp"
    path.write_text(HEAD + "output U @ x\n")
    assert cli.main(["check", str(path)]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err
    assert cli.main(["check", str(path), "--traceback"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_check_reports_every_file(tmp_path, capsys) -> None:
    good, bad = tmp_path / "good.tp", tmp_path / "bad.tp"
    good.write_text(HEAD + "output U @ x\n")
    bad.write_text(HEAD + "output relu(x)\n")
    assert main(["check", str(bad), str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("bad.tp:4:13: error:") == 2
    assert "good.tp: ok" in captured.out
