"""Stage 2, part 1: the meanings of expressions and the IR builder the elaborator writes into.

While an expression is evaluated its meaning is one of: a compile-time number (`Num`), a vector
(`Vec`: a sympy expression over the symbols of G values and C scalars), a scalar (`Scal`), a
weight matrix (`Mat`), data (`Data`). `ProgramBuilder` turns vectors into IR instructions only
where the program needs a value (a matmul operand, an assignment, the output), memoising equal
values into one: a vector affine in G values becomes a `LinComb` (still Gaussian); anything else
becomes a `Nonlin`, its nested functions composed into one sympy expression.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from tpcompile import ir
from tpcompile.errors import Span, TPError


@dataclass(frozen=True)
class Num:
    value: sympy.Expr


@dataclass(frozen=True)
class Vec:
    expr: sympy.Expr


@dataclass(frozen=True)
class Scal:
    expr: sympy.Expr


@dataclass(frozen=True)
class Mat:
    name: str
    family: str


@dataclass(frozen=True)
class Data:
    position: int
    text: str


Meaning = Num | Vec | Scal | Mat | Data


@dataclass
class Family:
    """A declared weight or bias (family): `kind name[ranges] ~ N(mean, var)`."""

    kind: str
    name: str
    ranges: tuple[tuple[int, int], ...]
    mean: sympy.Expr
    var: sympy.Expr
    span: Span


# ---- numbers -----------------------------------------------------------------------------------


# Limits that keep compilation time bounded on any input (a typo like `T = 50000000` must give
# an error, not an hour of unrolling).


MAX_INSTRUCTIONS = 50_000

MAX_EXPONENT = 400


def number(text: str, span: Span | None = None) -> sympy.Expr:
    """An exact number from its decimal spelling ("0.1" is exactly 1/10)."""
    _, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise TPError(f"the number {text} is out of range", span)
    return sympy.Rational(text)


def to_number(value: object, name: str) -> sympy.Expr:
    """A param override from Python or the command line, as an exact number."""
    if isinstance(value, bool):
        raise TPError(f"param `{name}` must be a number, got {value!r}")
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, float):
        return sympy.Rational(repr(value))
    if isinstance(value, sympy.Expr) and value.is_number:
        return value
    if isinstance(value, str):
        try:
            return sympy.Rational(value.strip())
        except (TypeError, ValueError, SyntaxError):
            pass
    raise TPError(f"param `{name}` must be a number, got {value!r}", hint="e.g. -D L=5")


def as_int(value: sympy.Expr) -> int | None:
    return int(value) if value.is_Integer else None


RANK = {Num: 0, Scal: 1, Vec: 2}


def payload(m: Num | Vec | Scal) -> sympy.Expr:
    return m.value if isinstance(m, Num) else m.expr


def describe(m: object) -> str:
    if isinstance(m, Num):
        return "a number"
    if isinstance(m, Scal):
        return "a scalar"
    if isinstance(m, Vec):
        return "a vector"
    if isinstance(m, Mat):
        return f"the matrix `{m.name}`"
    if isinstance(m, Data):
        return f"data `{m.text}`"
    return "this"


class ProgramBuilder:
    """The growing SSA program: instructions, their kinds, memoised values and used weights."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.instrs: list[ir.Instr] = []
        self.memo: dict[tuple, str] = {}
        self.weights: dict[str, ir.Weight] = {}
        self.kinds: dict[str, str] = {}  # value name -> G/H/C
        self.temps = 0

    def bind(self, key: str, meaning: Vec | Scal, mark: int, span: Span) -> Meaning:
        """Create the named instruction for an assignment; returns what the name now means."""
        expr = meaning.expr
        last = self.instrs[-1] if len(self.instrs) > mark else None
        if last is not None and last.out.startswith("%") and expr == ir.symbol(last.out):
            self._rename_last(key)  # `h = W @ x` names the matmul itself
        elif isinstance(meaning, Scal):
            self._emit(ir.ScalarDef(key, expr, self._args(expr), span), None)
        elif (affine := self.affine(expr)) is not None:
            terms, const = affine
            self._emit(ir.LinComb(key, terms, const, span), None)
        else:
            self._emit(ir.Nonlin(key, expr, self._args(expr), span), ("H", expr))
            return Vec(expr)
        return type(meaning)(ir.symbol(key))

    def _rename_last(self, new: str) -> None:
        old = self.instrs[-1]
        self.instrs[-1] = replace(old, out=new)
        self.kinds[new] = self.kinds.pop(old.out)
        for k, v in self.memo.items():
            if v == old.out:
                self.memo[k] = new

    def _emit(self, instr: ir.Instr, memo_key: tuple | None) -> str:
        if len(self.instrs) >= MAX_INSTRUCTIONS:
            raise TPError(
                f"the program unrolls to more than {MAX_INSTRUCTIONS} instructions",
                instr.span,
                "check loop bounds and params",
            )
        self.instrs.append(instr)
        self.kinds[instr.out] = instr.kind
        if memo_key is not None:
            self.memo.setdefault(memo_key, instr.out)
        return instr.out

    def _temp(self) -> str:
        self.temps += 1
        return f"%{self.temps}"

    def _args(self, expr: sympy.Expr) -> tuple[str, ...]:
        return tuple(sorted(s.name for s in expr.free_symbols))

    def affine(
        self, expr: sympy.Expr
    ) -> tuple[tuple[tuple[sympy.Expr, str], ...], sympy.Expr] | None:  # noqa: E501
        """(terms, const) if expr is an affine function of G values with number coefficients."""
        names = self._args(expr)
        if any(self.kinds[n] != "G" for n in names):
            return None
        # Structurally a polynomial of degree <= 1, not just "constant derivatives": step's
        # derivative is 0 by the autodiff convention, which would make step(g) look constant.
        symbols = [ir.symbol(n) for n in names]
        if symbols and not (
            expr.is_polynomial(*symbols) and sympy.Poly(expr, *symbols).total_degree() <= 1
        ):
            return None
        terms = []
        for n in names:
            coef = sympy.diff(expr, ir.symbol(n))
            if not coef.is_number:
                return None
            terms.append((coef, n))
        const = expr.subs({ir.symbol(n): 0 for n in names})
        return tuple(terms), const

    def materialize(self, vec: Vec, span: Span) -> str:
        """The IR value holding `vec`, creating a LinComb or Nonlin instruction if needed."""
        expr = vec.expr
        if expr.is_Symbol and self.kinds.get(expr.name) == "G":
            return expr.name
        if ("H", expr) in self.memo:
            return self.memo[("H", expr)]
        affine = self.affine(expr)
        if affine is not None:
            if ("G", expr) in self.memo:
                return self.memo[("G", expr)]
            terms, const = affine
            return self._emit(ir.LinComb(self._temp(), terms, const, span), ("G", expr))
        return self._emit(ir.Nonlin(self._temp(), expr, self._args(expr), span), ("H", expr))

    def weight_use(self, mat: Mat, on_data: bool, span: Span) -> None:
        existing = self.weights.get(mat.name)
        if existing is None:
            fam = self.families[mat.family]
            self.weights[mat.name] = ir.Weight(mat.name, fam.var, on_data, span)
        elif existing.on_data != on_data:
            first, here = (
                ("data", "hidden vectors")
                if existing.on_data
                else (
                    "hidden vectors",
                    "data",
                )
            )
            raise TPError(
                f"`{mat.name}` is applied to {here} here but to {first} at line "
                f"{existing.span.line}",
                span,
                "a matrix applied to data is n×d, one applied to hidden vectors n×n: "
                "declare separate weights",
            )

    def instance(self, fam: Family, text: str, span: Span) -> Meaning:
        if fam.kind == "weight":
            return Mat(text, fam.name)
        key = ("bias", text)
        if key not in self.memo:
            self._emit(ir.Bias(text, fam.mean, fam.var, fam.span), key)
        return Vec(ir.symbol(self.memo[key]))

    def moment(self, expr: sympy.Expr, span: Span) -> sympy.Expr:
        key = ("C", expr)
        if key not in self.memo:
            self._emit(ir.Moment(self._temp(), expr, self._args(expr), span), key)
        return ir.symbol(self.memo[key])
