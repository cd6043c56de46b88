"""Invariants of the IR, checked like `jax.core.check_jaxpr`: a bug finder, not a user check.

Where this sits: the elaborator (`lang/`) must only ever produce programs that pass `check_program`;
the tests run it after every elaboration (examples, the error corpus, random programs), so a
broken invariant is caught where it is made, not as a wrong kernel three stages later. A failure
raises `IRError` (an internal error: a bug in tpcompile, never the user's mistake).

The invariants, one rule per instruction type:
- SSA: every value is defined once, before it is used; the output is a defined G or H value.
- Types: a matmul multiplies a G or H value by a hidden-width matrix (not one applied to data); an
  embedding applies a data matrix to a position of the input; linear combinations combine G
  values; an H function or a moment reads only the symbols of its declared arguments, which are
  G values or C scalars; a scalar definition reads only C scalars.
- Numbers: variances are finite and non-negative, means and coefficients finite and real.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from tpcompile.ir.nodes import (
    Bias,
    Embed,
    Instr,
    LinComb,
    MatMul,
    Moment,
    Nonlin,
    Program,
    ScalarDef,
    symbol,
)


class IRError(AssertionError):
    """A program violates an IR invariant (a bug in the stage that built it)."""


def _require(ok: bool, instr: Instr | None, message: str) -> None:
    if not ok:
        where = f"`{instr.out}`: " if instr is not None else ""
        raise IRError(where + message)


def _real(x: sympy.Expr) -> bool:
    x = sympy.sympify(x)
    return bool(x.is_number and x.is_extended_real and x.is_finite)


def _variance(x: sympy.Expr) -> bool:
    return _real(x) and not bool(sympy.sympify(x).is_negative)


class _Checker:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.kinds: dict[str, str] = {}

    def kind_of(self, instr: Instr, name: str) -> str:
        _require(name in self.kinds, instr, f"reads `{name}` before it is defined")
        return self.kinds[name]

    def function(self, instr: Nonlin | Moment | ScalarDef, allowed: tuple[str, ...]) -> None:
        for a in instr.args:
            kind = self.kind_of(instr, a)
            _require(kind in allowed, instr, f"argument `{a}` is {kind}, not one of {allowed}")
        free = instr.fn.free_symbols
        declared = {symbol(a) for a in instr.args}
        _require(
            free <= declared,
            instr,
            f"its function reads {sorted(map(str, free - declared))}, not declared arguments",
        )


def _matmul(c: _Checker, instr: MatMul) -> None:
    weight = c.program.weight.get(instr.weight)
    _require(weight is not None, instr, f"uses undeclared weight `{instr.weight}`")
    _require(not weight.on_data, instr, f"applies data matrix `{instr.weight}` to a hidden value")
    _require(c.kind_of(instr, instr.arg) in ("G", "H"), instr, "multiplies a non-vector")


def _embed(c: _Checker, instr: Embed) -> None:
    weight = c.program.weight.get(instr.weight)
    _require(weight is not None, instr, f"uses undeclared weight `{instr.weight}`")
    _require(weight.on_data, instr, f"applies hidden matrix `{instr.weight}` to data")
    _require(
        0 <= instr.position < c.program.input.positions,
        instr,
        f"reads input position {instr.position} of {c.program.input.positions}",
    )


def _bias(c: _Checker, instr: Bias) -> None:
    _require(_real(instr.mean) and _variance(instr.var), instr, "has an invalid distribution")


def _lincomb(c: _Checker, instr: LinComb) -> None:
    _require(_real(instr.const), instr, "has a non-numeric constant")
    for coef, value in instr.terms:
        _require(_real(coef), instr, f"has a non-numeric coefficient {coef}")
        _require(c.kind_of(instr, value) == "G", instr, f"combines non-Gaussian `{value}`")


RULES: dict[type, Callable[[_Checker, Instr], None]] = {
    MatMul: _matmul,
    Embed: _embed,
    Bias: _bias,
    LinComb: _lincomb,
    Nonlin: lambda c, instr: c.function(instr, ("G", "C")),
    Moment: lambda c, instr: c.function(instr, ("G", "C")),
    ScalarDef: lambda c, instr: c.function(instr, ("C",)),
}


def check_program(program: Program) -> None:
    """Raise `IRError` if `program` breaks an invariant of the IR."""
    c = _Checker(program)
    for w in program.weights:
        _require(_variance(w.var), None, f"weight `{w.name}` has an invalid variance {w.var}")
    for instr in program.instrs:
        _require(instr.out not in c.kinds, instr, "is defined twice")
        rule = RULES.get(type(instr))
        _require(rule is not None, instr, f"has no IR rule for {type(instr).__name__}")
        rule(c, instr)
        c.kinds[instr.out] = instr.kind
    _require(bool(program.outputs), None, "the program has no output")
    for out in program.outputs:
        _require(
            c.kinds.get(out) in ("G", "H"),
            None,
            f"the output `{out}` is not a defined vector value",
        )
    ro = program.readout
    _require(_variance(ro.var) and _variance(ro.bias_var), None, "invalid readout variances")
