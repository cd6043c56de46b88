"""The IR checker (`tpcompile.ir.check`): every elaborated program passes, broken ones fail."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from program_strategies import programs

import tpcompile
from tpcompile import ir
from tpcompile.ir.check import IRError, check_program

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("examples").glob("*.tp"))
NORMALISED = """
input x
weight A ~ N(0, 1)
weight W ~ N(0, 2)
bias b ~ N(0.3, 0.1)
g = A @ x + b
s = avg(g * g)
h = W @ (layernorm(relu(g)) * s)
output tanh(h)
"""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_pass(path: Path) -> None:
    check_program(tpcompile.load_program(path.read_text()))


def test_width_averages_pass() -> None:
    check_program(tpcompile.load_program(NORMALISED))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_pass(source: str) -> None:
    check_program(tpcompile.load_program(source))


def _replace_instr(program: ir.Program, name: str, **changes: object) -> ir.Program:
    instrs = tuple(
        dataclasses.replace(i, **changes) if i.out == name else i for i in program.instrs
    )
    return dataclasses.replace(program, instrs=instrs)


def _gated() -> ir.Program:
    return tpcompile.load_program(EXAMPLES[[p.stem for p in EXAMPLES].index("gated")].read_text())


def test_use_before_definition_fails() -> None:
    program = _gated()
    broken = dataclasses.replace(program, instrs=tuple(reversed(program.instrs)))
    with pytest.raises(IRError, match="before it is defined"):
        check_program(broken)


def test_duplicate_definition_fails() -> None:
    program = _gated()
    broken = dataclasses.replace(program, instrs=program.instrs + program.instrs[:1])
    with pytest.raises(IRError, match="defined twice"):
        check_program(broken)


def test_data_matrix_on_hidden_value_fails() -> None:
    program = _gated()
    with pytest.raises(IRError, match="data matrix"):
        check_program(_replace_instr(program, "y", weight="A"))


def test_function_reading_undeclared_symbol_fails() -> None:
    program = _gated()
    nonlin = next(i for i in program.instrs if isinstance(i, ir.Nonlin))
    with pytest.raises(IRError, match="not declared arguments"):
        check_program(_replace_instr(program, nonlin.out, fn=nonlin.fn + ir.symbol("y")))


def test_negative_variance_fails() -> None:
    program = _gated()
    weights = (dataclasses.replace(program.weights[0], var=sympy.Integer(-1)), *program.weights[1:])
    with pytest.raises(IRError, match="invalid variance"):
        check_program(dataclasses.replace(program, weights=weights))
