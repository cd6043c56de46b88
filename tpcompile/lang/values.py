"""Stage 2, part 1: the meanings of expressions and the IR builder the elaborator writes into.

While an expression is evaluated its meaning is one of: a compile-time number (`Num`), a vector
(`Vec`: a sympy expression over the symbols of G values and C scalars), a scalar (`Scal`), a
weight matrix (`Mat`), data (`Data`). `ProgramBuilder` turns vectors into IR instructions only
where the program needs a value (a matmul operand, an assignment, the output), memoising equal
values into one: a vector affine in G values becomes a `LinComb` (still Gaussian); anything else
becomes a `Nonlin`, its nested functions composed into one sympy expression.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, replace

import sympy

from tpcompile import ir
from tpcompile.errors import Span, TPError
from tpcompile.lang import limits


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

_EXPAND_CAP = 10_000


def number(text: str, span: Span | None = None) -> sympy.Expr:
    """An exact number from its decimal spelling ("0.1" is exactly 1/10)."""
    mantissa, _, exponent = text.lower().partition("e")
    whole, _, fraction = mantissa.lstrip("+-").partition(".")
    digits = len(whole.lstrip("0")) + len(fraction)
    if digits > limits.MAX_DIGITS or len(exponent) > 6 or abs(int(exponent or 0)) > MAX_EXPONENT:
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise TPError(
            f"the number {shown} is out of range",
            span,
            f"numbers have at most {limits.MAX_DIGITS} digits and exponents up to {MAX_EXPONENT}",
        )
    return sympy.Rational(text)


# A param's value from Python or the command line: signed decimal, optionally a fraction.
_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def to_number(value: object, name: str) -> sympy.Expr:
    """A param override from Python or the command line, as an exact number.

    Python and NumPy integers and floats are accepted (`np.int64(5)` from an array of sweeps);
    booleans are not numbers here, however Python counts them.
    """
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        raise TPError(f"param `{name}` must be a number, got the boolean {value!r}")
    result: sympy.Expr | None = None
    if isinstance(value, sympy.Expr):
        result = value if value.is_number else None
    elif isinstance(value, str):
        result = _parse_decimal(value.strip(), name)
    elif isinstance(value, numbers.Integral):
        result = sympy.Integer(int(value))
    elif isinstance(value, numbers.Rational):  # fractions.Fraction
        result = sympy.Rational(int(value.numerator), int(value.denominator))
    elif isinstance(value, numbers.Real):  # float, numpy floats: their shortest decimal
        if not math.isfinite(float(value)):
            raise TPError(f"param `{name}` must be a finite number, got {value!r}")
        text = repr(value) if isinstance(value, float) else str(value)
        result = _parse_decimal(text, name) if _DECIMAL.fullmatch(text) else None
        result = result if result is not None else sympy.Rational(repr(float(value)))
    if result is None:
        raise TPError(f"param `{name}` must be a number, got {value!r}", hint="e.g. -D L=5")
    try:
        limits.check_number(result, None)
    except TPError as err:
        raise TPError(f"param `{name}`: {err.message}", hint=err.hint) from None
    return result


def _parse_decimal(text: str, name: str) -> sympy.Expr | None:
    top, slash, bottom = text.partition("/")
    if not _DECIMAL.fullmatch(top) or (slash and not _DECIMAL.fullmatch(bottom)):
        return None
    try:
        value = number(top)
        if slash:
            divisor = number(bottom)
            value = value / divisor if divisor != 0 else None
    except TPError as err:
        raise TPError(f"param `{name}`: {err.message}", hint=err.hint) from None
    return value


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
        self.memo_keys: dict[str, list[tuple]] = {}  # value -> its keys in memo (for renames)
        self.weights: dict[str, ir.Weight] = {}
        self.kinds: dict[str, str] = {}  # value name -> G/H/C
        self.temps = 0
        self.expr_limits = limits.ExprLimits()
        self.steps = 0  # unrolling work so far (limits.MAX_STEPS)
        self.nesting = 0  # expressions being evaluated, inlined defs included

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
        # Through the reverse index: scanning all of memo made long programs quadratic.
        keys = self.memo_keys.pop(old.out, [])
        for k in keys:
            self.memo[k] = new
        self.memo_keys[new] = keys

    def _emit(self, instr: ir.Instr, memo_key: tuple | None) -> str:
        if len(self.instrs) >= MAX_INSTRUCTIONS:
            raise TPError(
                f"the program unrolls to more than {MAX_INSTRUCTIONS} instructions",
                instr.span,
                "check loop bounds and params",
            )
        self.instrs.append(instr)
        self.kinds[instr.out] = instr.kind
        if memo_key is not None and memo_key not in self.memo:
            self.memo[memo_key] = instr.out
            self.memo_keys.setdefault(instr.out, []).append(memo_key)
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
        read = _read_affine(expr, names)
        if read is not None:  # the common case, read off without sympy's diff, Poly and subs
            return read
        # Structurally a polynomial of degree <= 1, not just "constant derivatives": step's
        # derivative is 0 by the autodiff convention, which would make step(g) look constant.
        symbols = [ir.symbol(n) for n in names]
        # Poly expands: `(g1 + ... + g6)**64` would have millions of terms, so a polynomial
        # too large to expand is taken as nonlinear (it is, unless its terms cancel).
        if symbols and not (
            expr.is_polynomial(*symbols)
            and limits.expansion_size(expr, _EXPAND_CAP) < _EXPAND_CAP
            and sympy.Poly(expr, *symbols).total_degree() <= 1
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


def _read_affine(
    expr: sympy.Expr, names: tuple[str, ...]
) -> tuple[tuple[tuple[sympy.Expr, str], ...], sympy.Expr] | None:
    """(terms, const) of `c0 + c1*g1 + ...` with number c's, read from its canonical form; None
    for any other form (then `affine` decides the slow way, with the same result)."""
    coefs: dict[str, sympy.Expr] = {}
    const: sympy.Expr = sympy.Integer(0)
    for part in expr.args if expr.is_Add else (expr,):
        coef, rest = part.as_coeff_Mul()
        if rest is sympy.S.One:
            const += coef
        elif rest.is_Symbol and rest.name not in coefs:
            coefs[rest.name] = coef
        else:
            return None
    if len(coefs) != len(names):
        return None
    return tuple((coefs[n], n) for n in names), const
