"""Stage 2 of the pipeline: syntax tree -> typed SSA `ir.Program`.

Substitutes params, unrolls `for` loops, resolves names and checks declarations, assignments and
the output; expressions are evaluated by `expressions.py` into the builder of `values.py`. Every
value is classified as A (matrix), G (Gaussian vector), H (function of G vectors) or C (scalar
moment). Every mistake a user can make beyond syntax is reported here as a `TPError` pointing at
the offending source.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import sympy

from tpcompile import ir
from tpcompile.errors import Span, TPError, did_you_mean
from tpcompile.lang import limits
from tpcompile.lang import syntax as S
from tpcompile.lang import values as _values
from tpcompile.lang.builtins import RULES
from tpcompile.lang.expressions import ExpressionEvaluator
from tpcompile.lang.values import Data, Family, Mat, Meaning, Num, Vec, describe, to_number

SPECIAL_FUNCTIONS = ("avg", "layernorm", "sum", "mean")


class Elaborator(ExpressionEvaluator):
    def __init__(self, overrides: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self.overrides = {k: to_number(v, k) for k, v in (overrides or {}).items()}
        self.params: dict[str, sympy.Expr] = {}
        self.defs: dict[str, S.DefStmt] = {}
        self.input: ir.Input | None = None
        self.readout: ir.Readout | None = None
        self.outputs: tuple[str, ...] | None = None
        self.values: dict[str, Meaning] = {}  # assigned names: "h" or "h[3]" or "b[1,2]"
        self.assigned_at: dict[str, Span] = {}
        self.family_of: dict[str, bool] = {}  # assigned base name -> indexed?
        self.scopes: list[dict[str, Meaning]] = []
        self.later: dict[str, Span] = {}  # every name declared or assigned anywhere
        self.call_stack: list[str] = []

    def run(self, module: S.Module) -> ir.Program:
        self._prescan(module.body)
        for stmt in module.body:
            self.stmt(stmt, top=True)
        unknown = set(self.overrides) - set(self.params)
        if unknown:
            name = sorted(unknown)[0]
            raise TPError(
                f"no param named `{name}` to override", hint=did_you_mean(name, self.params)
            )
        if self.input is None:
            raise TPError("the program has no `input`", hint="declare the data: `input x`")
        if self.outputs is None:
            raise TPError("the program has no `output`", hint="end with e.g. `output relu(h)`")
        readout = self.readout or ir.Readout(sympy.Integer(1), sympy.Integer(0), None)
        return ir.Program(
            self.input,
            tuple(self.weights.values()),
            tuple(self.instrs),
            self.outputs,
            readout,
            dict(self.params),
        )

    def _prescan(self, body: tuple[S.Stmt, ...]) -> None:
        for stmt in body:
            if isinstance(stmt, S.ForStmt):
                self._prescan(stmt.body)
            elif not isinstance(stmt, S.OutputStmt | S.ReadoutStmt):
                self.later.setdefault(stmt.name, stmt.span)

    def stmt(self, stmt: S.Stmt, top: bool) -> None:
        if not top and not isinstance(stmt, S.AssignStmt | S.ForStmt):
            what = type(stmt).__name__.removesuffix("Stmt").lower()
            what = {"decl": getattr(stmt, "kind", "decl")}.get(what, what)
            raise TPError(
                f"`{what}` inside a loop",
                stmt.span,
                "declarations and the output belong at the top level; only assignments and "
                "`for` loops can be repeated",
            )
        match stmt:
            case S.ParamStmt(name, value, span):
                self._fresh_name(name, span)
                if name in self.overrides:
                    self.params[name] = self.overrides[name]
                else:
                    self.params[name] = self.number(value, "a param's value")
            case S.InputStmt(name, ranges, span):
                if self.input is not None:
                    raise TPError(
                        "a second `input`", span, "v1 programs have exactly one data input"
                    )
                self._fresh_name(name, span)
                bounds = [self.range_(r) for r in ranges]
                for (lo, hi), r in zip(bounds, ranges, strict=True):
                    if hi < lo:
                        raise TPError(f"the input range {lo}..{hi} is empty", r.span)
                shape = tuple(hi - lo + 1 for lo, hi in bounds)
                _check_input_size(shape, span)
                self.input = ir.Input(name, shape, tuple(lo for lo, _ in bounds), span)
            case S.DeclStmt(kind, name, ranges, dist, span):
                self._fresh_name(name, span)
                ((mean, var),) = self.distributions(dist, 1)
                if kind == "weight" and mean != 0:
                    raise TPError(
                        "weights have mean 0",
                        dist.span,
                        "write N(0, var); the second number is the variance",
                    )
                bounds = tuple(self.range_(r) for r in ranges)
                size = math.prod(max(0, hi - lo + 1) for lo, hi in bounds)
                if size > limits.MAX_FAMILY:
                    raise TPError(
                        f"the family `{name}` has {size} elements, more than the limit of "
                        f"{limits.MAX_FAMILY}",
                        span,
                        "every element used is an instruction (at most "
                        f"{_values.MAX_INSTRUCTIONS}); check the ranges",
                    )
                self.families[name] = Family(kind, name, bounds, mean, var, span)
            case S.ReadoutStmt(dist, span):
                if self.readout is not None:
                    raise TPError("a second `readout` declaration", span)
                pieces = self.distributions(dist, 2)
                for mean, _ in pieces:
                    if mean != 0:
                        raise TPError(
                            "the readout must have mean 0",
                            dist.span,
                            "a nonzero-mean readout breaks gradient independence (the program "
                            "would not be BP-like); write N(0, var)",
                        )
                bias_var = pieces[1][1] if len(pieces) == 2 else sympy.Integer(0)
                self.readout = ir.Readout(pieces[0][1], bias_var, span)
            case S.DefStmt(name, params, _, span):
                self._fresh_name(name, span)
                if name in RULES or name in SPECIAL_FUNCTIONS:
                    raise TPError(f"`{name}` is a builtin and cannot be redefined", span)
                if len(set(params)) != len(params):
                    raise TPError(f"`{name}` has a repeated parameter name", span)
                self.defs[name] = stmt
            case S.AssignStmt():
                self.assign(stmt)
            case S.ForStmt(var, rng, body, span):
                lo, hi = self.range_(rng)
                self._fresh_name(var, rng.span)
                self._check_trip_count(lo, hi, rng.span)
                for i in range(lo, hi + 1):
                    self.step(rng.span, loop=True)
                    with self.scope({var: Num(sympy.Integer(i))}):
                        for inner in body:
                            self.stmt(inner, top=False)
            case S.OutputStmt(value, span):
                if self.outputs is not None:
                    raise TPError("a second `output`", span, "a program has exactly one output")
                if isinstance(value, S.Comprehension) and value.func == "flatten":
                    self.outputs = tuple(
                        self._output(body, where) for body, where in self.terms(value)
                    )
                else:
                    self.outputs = (self._output(self.ev(value), value),)

    def _output(self, meaning: Meaning, where: S.Expr) -> str:
        if not isinstance(meaning, Vec):
            raise TPError(f"the output must be a vector, not {describe(meaning)}", where.span)
        return self.materialize(meaning, where.span)

    def distributions(self, e: S.Expr, most: int) -> list[tuple[sympy.Expr, sympy.Expr]]:
        pieces = [e]
        if most > 1 and isinstance(e, S.BinOp) and e.op == "+":
            pieces = [e.left, e.right]
        out = []
        for p in pieces:
            if not (isinstance(p, S.Call) and p.func == "N" and len(p.args) == 2):
                raise TPError(
                    "expected a distribution N(mean, var)",
                    p.span,
                    "the readout may add a scalar bias: `readout ~ N(0, 1) + N(0, 0.1)`"
                    if most > 1
                    else "e.g. `weight W ~ N(0, 2.0)`; the second number is the variance",
                )
            mean = self.number(p.args[0], "a mean")
            var = self.number(p.args[1], "a variance")
            limits.finite(mean, "the mean", p.args[0].span)
            limits.finite(var, "the variance", p.args[1].span)
            if not (var.is_real and var >= 0):
                raise TPError("a variance must be a number >= 0", p.args[1].span)
            out.append((mean, var))
        return out

    def _declared(self, name: str) -> bool:
        return (
            name in self.params
            or name in self.families
            or name in self.defs
            or (self.input is not None and name == self.input.name)
            or any(name in s for s in self.scopes)
        )

    def _fresh_name(self, name: str, span: Span) -> None:
        if self._declared(name) or name in self.family_of:
            raise TPError(f"`{name}` is already defined", span, "names are single-assignment")

    @contextmanager
    def scope(self, bindings: dict[str, Meaning]) -> Iterator[None]:
        self.scopes.append(bindings)
        try:
            yield
        finally:
            self.scopes.pop()

    def assign(self, stmt: S.AssignStmt) -> None:
        name, span = stmt.name, stmt.target_span
        if self._declared(name):
            raise TPError(
                f"`{name}` is already declared and cannot be assigned",
                span,
                "names are single-assignment; pick a new name",
            )
        indexed = bool(stmt.indices)
        if self.family_of.setdefault(name, indexed) != indexed:
            how = "with" if self.family_of[name] else "without"
            raise TPError(f"`{name}` was assigned {how} an index before", span)
        key = name
        if indexed:
            key = f"{name}[{','.join(str(self.integer(i)) for i in stmt.indices)}]"
        if key in self.assigned_at:
            first = self.assigned_at[key]
            raise TPError(
                f"`{key}` is assigned twice (first at line {first.line})",
                span,
                "names are single-assignment; inside a loop, index the name: h[t] = ...",
            )
        mark = len(self.instrs)
        meaning = self.ev(stmt.value)
        if isinstance(meaning, Num):
            raise TPError(
                f"`{key}` is assigned a number",
                stmt.value.span,
                "declare compile-time numbers with `param`",
            )
        if isinstance(meaning, Mat | Data):
            raise TPError(
                f"`{key}` is assigned {describe(meaning)}; only vectors and scalars can be named",
                stmt.value.span,
            )
        self.assigned_at[key] = span
        self.values[key] = self.bind(key, meaning, mark, stmt.span)

    def lookup(self, name: str, span: Span) -> Meaning | Family | S.DefStmt | ir.Input:
        for s in reversed(self.scopes):
            if name in s:
                return s[name]
        if name in self.params:
            return Num(self.params[name])
        if name in self.families:
            return self.families[name]
        if name in self.defs:
            return self.defs[name]
        if self.input is not None and name == self.input.name:
            return self.input
        if name in self.values:
            return self.values[name]
        if name in self.family_of:
            raise TPError(f"`{name}` is a family; index it like `{name}[...]`", span)
        if name in self.later:
            raise TPError(
                f"`{name}` is used before it is defined (line {self.later[name].line})",
                span,
                "declarations and assignments must come before their use",
            )
        known = [*self.params, *self.families, *self.defs, *self.values, *RULES]
        known += [k for s in self.scopes for k in s]
        if self.input is not None:
            known.append(self.input.name)
        raise TPError(f"unknown name `{name}`", span, did_you_mean(name, known))


def _check_input_size(shape: tuple[int, ...], span: Span) -> None:
    if len(shape) > limits.MAX_INPUT_AXES:
        raise TPError(
            f"the input has {len(shape)} index ranges, more than the limit of "
            f"{limits.MAX_INPUT_AXES}",
            span,
        )
    positions = math.prod(shape)
    if positions > limits.MAX_POSITIONS:
        raise TPError(
            f"the input has {positions} positions, more than the limit of {limits.MAX_POSITIONS}",
            span,
            "the data holds one d-vector per position for every example (65 536 is a 256×256 "
            "image), and kernels compare every pair of positions; check the ranges",
        )


def elaborate(module: S.Module, params: Mapping[str, object] | None = None) -> ir.Program:
    """Type-check and unroll a parsed program into the IR."""
    return Elaborator(params).run(module)
