"""The language, version 1 (DESIGN.md §1): every construct elaborates to the IR it means."""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy

from tpcompile import ir, load_program
from tpcompile.cli import main
from tpcompile.lang.builtins import RULES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.tp"))


def kinds(program: ir.Program) -> dict[str, str]:
    return {i.out: i.kind for i in program.instrs}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_golden_ir(path: Path, capsys) -> None:
    """`tpcompile ir` (golden .ir) and `tpcompile ir --families` (golden .families; the
    unrolled form of an 8×8 CNN is 1 800 lines, its families 30)."""
    stem = ROOT / "tests" / "golden" / path.stem
    plain, rolled = stem.with_suffix(".ir"), stem.with_suffix(".families")
    assert plain.exists() or rolled.exists()
    for golden, flags in ((plain, []), (rolled, ["--families"])):
        if golden.exists():
            assert main(["ir", *flags, str(path)]) == 0
            assert capsys.readouterr().out == golden.read_text()


def test_examples_have_header_comment() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"mlp.tp", "resnet.tp", "rnn.tp", "gated.tp", "cnn1d.tp"} <= names
    for p in EXAMPLES:
        assert p.read_text().startswith(f"# {p.name} — ")


def test_check_all_examples(capsys) -> None:
    assert main(["check", *map(str, EXAMPLES)]) == 0
    assert capsys.readouterr().out.count(": ok") == len(EXAMPLES)


def test_param_override_changes_unrolling() -> None:
    src = (ROOT / "examples" / "mlp.tp").read_text()
    assert len(load_program(src).weights) == 3
    prog = load_program(src, {"L": 5, "sw2": 1.5})
    assert [w.name for w in prog.weights] == ["U", "W[2]", "W[3]", "W[4]", "W[5]"]
    assert all(w.var == sympy.Rational(3, 2) for w in prog.weights)
    assert prog.params["L"] == 5


def test_cli_define(capsys) -> None:
    assert main(["ir", str(ROOT / "examples" / "rnn.tp"), "-D", "T=2"]) == 0
    out = capsys.readouterr().out
    assert "h[2]" in out and "h[3]" not in out


def test_numbers_are_exact_param_expressions() -> None:
    prog = load_program(
        "param s = 2.0\ninput x\nweight U ~ N(0, s/3)\nbias b ~ N(0.5, 1e-2)\noutput U @ x + b\n"
    )
    assert prog.weights[0].var == sympy.Rational(2, 3)
    bias = next(i for i in prog.instrs if isinstance(i, ir.Bias))
    assert (bias.mean, bias.var) == (sympy.Rational(1, 2), sympy.Rational(1, 100))


def test_index_arithmetic_has_python_semantics() -> None:
    # (p - 3) % 4 for p = 1 is 2 in Python (not -2); 7 // 2 = 3; -7 // 2 = -4
    src = (
        "param P = 4\ninput x[1..P]\nweight U[1..3] ~ N(0, 1)\n"
        "a = U[1] @ x[(1 - 3) % P + 1]\nb = U[2] @ x[7 // 2]\nc = U[3] @ x[-7 // 2 + 5]\n"
        "output a + b + c\n"
    )
    prog = load_program(src)
    embeds = [i.position for i in prog.instrs if isinstance(i, ir.Embed)]
    assert embeds == [2, 2, 0]  # x[3], x[3], x[1] as flat positions 2, 2, 0


def test_multi_index_families_and_nested_loops() -> None:
    src = (
        "input x[1..2, 1..3]\nweight U ~ N(0, 1)\nbias b[1..2, 1..3] ~ N(0, 1)\n"
        "for i in 1..2 {\n  for j in 1..3 {\n    h[i, j] = U @ x[i, j] + b[i, j]\n  }\n}\n"
        "output mean(relu(h[i, 3]) for i in 1..2)\n"
    )
    prog = load_program(src)
    assert prog.input.shape == (2, 3)
    assert [i.position for i in prog.instrs if isinstance(i, ir.Embed)] == list(range(6))
    assert "h[2,3]" in kinds(prog) and "b[1,2]" in kinds(prog)


def test_comprehension_filter_zero_padding() -> None:
    src = (
        "param P = 4\ninput x[1..P]\nweight K[1..3] ~ N(0, 1)\n"
        "for p in 1..P {\n"
        "  h[p] = sum(K[k] @ x[p + k - 2] for k in 1..3 if 1 <= p + k - 2 and p + k - 2 <= P)\n"
        "}\n"
        "output h[1]\n"
    )
    prog = load_program(src)
    h1 = prog.by_name["h[1]"]
    assert isinstance(h1, ir.LinComb) and len(h1.terms) == 2  # k = 1 falls off the edge


def test_filters_with_not_or_and_equality() -> None:
    src = (
        "input x[1..4]\nweight U ~ N(0, 1)\n"
        "output sum(U @ x[t] for t in 1..4 if not (t == 2 or t != 3 and t > 3))\n"
    )
    prog = load_program(src)
    assert sorted(i.position for i in prog.instrs if isinstance(i, ir.Embed)) == [0, 2]


def test_def_is_inlined_and_composes() -> None:
    src = (
        "input x\nweight U ~ N(0, 1)\nweight W ~ N(0, 1)\n"
        "def swish(z) = z * sigmoid(z)\ndef layer(M, h) = M @ swish(h)\n"
        "g = U @ x\noutput tanh(relu(layer(W, g)))\n"
    )
    prog = load_program(src)
    out = prog.by_name[prog.outputs[0]]
    assert isinstance(out, ir.Nonlin)
    mm = next(i for i in prog.instrs if isinstance(i, ir.MatMul))
    # one composed function of the matmul's G value, no intermediate value for relu(...)
    assert ir.format_expr(out.fn) == f"tanh(relu({mm.out}))"
    assert ir.format_expr(prog.by_name[mm.arg].fn) == "g*sigmoid(g)"


def test_classification_of_values() -> None:
    src = (
        "input x\nweight U ~ N(0, 1)\nweight V ~ N(0, 1)\nbias b ~ N(0, 1)\n"
        "g = U @ x\nh = V @ x\nlin = 2 * g - h / 4 + b + 1\nprod = g * h\n"
        "sq = g ** 2\nm = avg(relu(g))\nscaled = m * g\nln = layernorm(g, 0.01)\n"
        "output lin + prod + sq + scaled + ln\n"
    )
    prog = load_program(src)
    k = kinds(prog)
    assert (k["g"], k["lin"], k["prod"], k["sq"], k["m"], k["scaled"], k["ln"]) == (
        "G",
        "G",
        "H",
        "H",
        "C",
        "H",
        "H",
    )
    lin = prog.by_name["lin"]
    assert isinstance(lin, ir.LinComb) and lin.const == 1
    assert dict((v, c) for c, v in lin.terms) == {"g": 2, "h": sympy.Rational(-1, 4), "b": 1}
    moments = [i for i in prog.instrs if isinstance(i, ir.Moment)]
    assert [ir.format_expr(m.fn) for m in moments] == ["relu(g)", "g", "g**2"]


def test_builtin_arguments_that_are_linear_combinations_become_g_values() -> None:
    src = "input x\nweight U ~ N(0, 1)\nweight V ~ N(0, 1)\noutput relu(U @ x + 2 * (V @ x))\n"
    prog = load_program(src)
    out = prog.by_name[prog.outputs[0]]
    (arg,) = out.args
    assert isinstance(prog.by_name[arg], ir.LinComb)


def test_shared_subexpressions_are_one_value() -> None:
    prog = load_program("input x\nweight U ~ N(0, 1)\noutput (U @ x) * (U @ x) + U @ x\n")
    assert sum(isinstance(i, ir.Embed) for i in prog.instrs) == 1


def test_readout_with_bias_and_default() -> None:
    base = "input x\nweight U ~ N(0, 1)\n"
    prog = load_program(base + "readout ~ N(0, 2) + N(0, 0.25)\noutput U @ x\n")
    assert (prog.readout.var, prog.readout.bias_var) == (2, sympy.Rational(1, 4))
    prog = load_program(base + "output U @ x\n")
    assert (prog.readout.var, prog.readout.bias_var) == (1, 0)


def test_statement_separators_comments_and_line_continuation() -> None:
    src = (
        "input x; weight U ~ N(0, 1)   # two statements\n\n   # a comment line\n"
        "h = relu(U @ x +\n         0.5)\nfor t in 1..2 { g[t] = U @ x }\noutput h\n"
    )
    prog = load_program(src)
    assert prog.outputs[0] == "h"


def test_right_associative_matmul_and_unary_minus() -> None:
    prog = load_program("input x\nweight U ~ N(0, 1)\nweight W ~ N(0, 1)\noutput -W @ U @ x * 2\n")
    out = prog.by_name[prog.outputs[0]]
    assert isinstance(out, ir.LinComb) and out.terms[0][0] == -2


def test_every_builtin_is_callable_from_the_language() -> None:
    for name, rule in RULES.items():
        nums = {"leaky_relu": ", 0.1", "relu_pow": ", 2"}.get(name, "")
        if rule.vector:
            src = f"input x\nweight U ~ N(0, 1)\noutput {name}(U @ x{nums})\n"
        else:
            src = f"input x\nweight U ~ N(0, 1)\ng = U @ x\noutput {name}(avg(g * g)) * g\n"
        load_program(src)


def test_ir_is_frozen_and_has_spans() -> None:
    prog = load_program((ROOT / "examples" / "gated.tp").read_text())
    for instr in prog.instrs:
        assert instr.span.line >= 1
        with pytest.raises(AttributeError):
            instr.out = "changed"  # type: ignore[misc]


def test_functions_with_zero_derivative_are_not_constants() -> None:
    # step's derivative is 0 (autodiff convention); step(z) is still a nonlinear H value.
    for out in ("step(z)", "step(g) * step(z)", "step(g) * 1.0", "sign(z) + 1"):
        prog = load_program(f"input x\nweight U ~ N(0, 1)\nz = U @ x\ng = 2 * z\noutput {out}\n")
        assert prog.kind(prog.outputs[0]) == "H", out
