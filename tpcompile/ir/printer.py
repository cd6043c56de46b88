"""The canonical text of the IR (`tpcompile ir`, golden files, labels in generated code).

Where this sits: reads `ir/nodes.py`; used by the CLI, the kernel graph's labels and `show`.
H functions print in the language's own spelling (`relu(h[1])`, not `Relu(h[1])`).
"""

from __future__ import annotations

import sympy

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
    ScalarDef,
)
from tpcompile.prims import by_function


class _IRPrinter(sympy.printing.str.StrPrinter):
    """Prints H functions in the language's own spelling: relu(h[1]), not Relu(h[1])."""

    def _print_Function(self, expr: sympy.Function) -> str:
        prim = by_function(type(expr))
        name = prim.name if prim is not None and prim.language else type(expr).__name__.lower()
        if prim is not None and not prim.language and prim.name.islower():
            name = prim.name  # internal records spelled as recorded: gelu_prime, safe_sqrt
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"


_printer = _IRPrinter({"order": "lex"})


def format_expr(expr: sympy.Expr) -> str:
    return _printer.doprint(expr)


def _dist(mean: sympy.Expr, var: sympy.Expr) -> str:
    return f"N({format_expr(mean)}, {format_expr(var)})"


def format_instr(instr: Instr, data: Input | None = None) -> str:
    match instr:
        case MatMul(weight=weight, arg=arg):
            rhs = f"{weight} @ {arg}"
        case Embed(weight=weight, position=position):
            rhs = f"{weight} @ {data.index_text(position) if data else f'x@{position}'}"
        case Bias(mean=mean, var=var):
            rhs = f"bias ~ {_dist(mean, var)}"
        case LinComb():
            rhs = format_expr(instr.expr)
        case Moment(fn=fn):
            rhs = f"avg({format_expr(fn)})"
        case Nonlin(fn=fn) | ScalarDef(fn=fn):
            rhs = format_expr(fn)
    return f"{instr.out} : {instr.kind} = {rhs}"


def format_program(program: Program) -> str:
    inp = program.input
    shape = "".join(f"[{lo}..{lo + n - 1}]" for lo, n in zip(inp.lows, inp.shape, strict=True))
    array = ", ".join(["N", *map(str, inp.shape), "d"])
    lines = [f"input {inp.name}{shape}  # data of shape ({array})"]
    for name, value in sorted(program.params.items()):
        lines.append(f"param {name} = {format_expr(value)}")
    for w in program.weights:
        where = "on data, n×d" if w.on_data else "n×n"
        lines.append(f"weight {w.name} ~ {_dist(sympy.Integer(0), w.var)}  # {where}")
    lines.extend(format_instr(i, inp) for i in program.instrs)
    ro = program.readout
    bias = f" + {_dist(sympy.Integer(0), ro.bias_var)}" if ro.bias_var != 0 else ""
    out = (
        program.outputs[0]
        if len(program.outputs) == 1
        else f"flatten({', '.join(program.outputs)})"
    )
    lines.append(f"output {out}  # readout ~ {_dist(sympy.Integer(0), ro.var)}{bias}")
    return "\n".join(lines) + "\n"
