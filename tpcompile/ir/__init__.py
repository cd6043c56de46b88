"""The IR: the typed SSA program every stage after elaboration reads.

`nodes.py` holds the instructions (frozen dataclasses with spans) and `Program`; `printer.py`
its canonical text; `check.py` its invariants (run by the tests after every elaboration).
"""

from tpcompile.ir.nodes import (
    Bias,
    Embed,
    Input,
    Instr,
    LinComb,
    MatMul,
    Moment,
    Nonlin,
    Program,
    Readout,
    ScalarDef,
    Weight,
    symbol,
)
from tpcompile.ir.printer import format_expr, format_instr, format_program

# `str(program)` is its canonical text. Attached here, where both modules are loaded, so the
# instructions never import their printer (imports flow nodes -> printer, one way).
Program.__str__ = format_program  # type: ignore[method-assign]

__all__ = [
    "Bias",
    "Embed",
    "Input",
    "Instr",
    "LinComb",
    "MatMul",
    "Moment",
    "Nonlin",
    "Program",
    "Readout",
    "ScalarDef",
    "Weight",
    "format_expr",
    "format_instr",
    "format_program",
    "symbol",
]
