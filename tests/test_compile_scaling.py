"""Structural properties behind the compile time of recurrences (no timings: those are
`benchmarks/compile_time.py`'s).

- An Elman RNN of length T has exactly 6T² + T + 2 kernel quantities: a constant number per
  pair of steps, so analysis time linear in the graph is quadratic in T, and a memo key that
  stopped matching would show here as extra nodes.
- The numerical probe that lets the parity test skip a symbolic expansion gives the symbolic
  test's answer: it only ever says "not odd" where the expansion is nonzero.
- Long programs run the recursive rules with a deeper stack, with the same result as without,
  and the interpreter's recursion limit is restored afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sympy

import tpcompile
from tpcompile.kernels import _analyse, _with_deep_stack, analyse
from tpcompile.kernels.param import NTK
from tpcompile.kernels.symbolic import _surely_not_odd, is_odd
from tpcompile.prims.functions import Relu, Sigmoid

RNN = (Path(__file__).resolve().parent.parent / "examples" / "rnn.tp").read_text()
x, y, z = sympy.symbols("x y z", real=True)


@pytest.mark.parametrize("steps", [3, 6, 12])
def test_rnn_graph_is_quadratic_in_length(steps: int) -> None:
    graph, _, _ = analyse(tpcompile.load_program(RNN, {"T": steps}))
    assert len(graph.nodes) == 6 * steps**2 + steps + 2


EXPRESSIONS = [
    sympy.tanh(x),  # odd
    sympy.tanh(x) * sympy.tanh(y),  # even
    x * sympy.tanh(y) ** 2,  # odd
    sympy.tanh(x) + sympy.tanh(y) ** 2,  # neither
    (1 - Sigmoid(x)) * sympy.tanh(y) + Sigmoid(x) * sympy.tanh(z),  # a GRU-like gate
    (1 - Sigmoid(x)) * (Sigmoid(x) * sympy.tanh(y) - Sigmoid(y)) * sympy.tanh(y),
    Relu(x) - Relu(-x),  # odd (= x), though not term by term
    Relu(x) + Relu(-x),  # even (= |x|)
    sympy.erf(x) * x**3 + sympy.sin(y) * y**2,
    sympy.exp(x) - sympy.exp(-x),  # odd (2 sinh x)
    2 * Sigmoid(x) - 1,  # odd (tanh(x/2)), but not to sympy
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=str)
def test_parity_probe_agrees_with_symbolic_test(expr: sympy.Expr) -> None:
    variables = sorted(expr.free_symbols, key=lambda s: s.name)
    symbolic = sympy.expand(expr.xreplace({v: -v for v in variables}) + expr) == 0
    assert is_odd(expr, variables) == symbolic
    if _surely_not_odd(expr, variables):  # the shortcut only ever answers "not odd"...
        assert not symbolic  # ... where the expansion is nonzero


def test_probe_defers_on_odd_functions() -> None:
    for expr in (sympy.tanh(x), x * sympy.tanh(y) ** 2, sympy.exp(x) - sympy.exp(-x)):
        assert not _surely_not_odd(expr, sorted(expr.free_symbols, key=lambda s: s.name))


def test_long_program_runs_with_a_deeper_stack_and_same_result() -> None:
    program = tpcompile.load_program(RNN, {"T": 30})  # 120 instructions: the deep-stack path
    limit = sys.getrecursionlimit()
    deep, plain = analyse(program), _analyse(program, None, NTK)
    assert sys.getrecursionlimit() == limit
    assert [(n.label, n.formula) for n in deep[0].nodes] == [
        (n.label, n.formula) for n in plain[0].nodes
    ]
    assert (deep[1], deep[2]) == (plain[1], plain[2])


def test_deep_stack_recurses_and_reraises() -> None:
    def down(n: int) -> int:
        return 0 if n == 0 else 1 + down(n - 1)

    limit = sys.getrecursionlimit()
    assert _with_deep_stack(lambda: down(20000), 25000) == 20000
    with pytest.raises(ZeroDivisionError):
        _with_deep_stack(lambda: 1 // 0, 25000)
    assert sys.getrecursionlimit() == limit
