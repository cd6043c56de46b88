"""Stage 2 of the pipeline: syntax tree -> typed SSA `ir.Program`.

Substitutes params, unrolls `for` loops and comprehensions, inlines `def`s, resolves names and
classifies every value as A (matrix), G (Gaussian vector), H (function of G vectors) or C
(scalar moment). Every mistake a user can make beyond syntax is reported here as a `TPError`
pointing at the offending source.

While an expression is evaluated its meaning is one of: a compile-time number (`Num`), a vector
(`Vec`: a sympy expression over the symbols of G values and C scalars), a scalar (`Scal`), a
weight matrix (`Mat`), data (`Data`). Vectors become IR instructions only where the program
needs a value: a matmul operand, an assignment, the output. A vector that is affine in G values
becomes a `LinComb` (still Gaussian); anything else becomes a `Nonlin`, its nested functions
composed into one sympy expression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import sympy

from . import ir
from . import syntax as S
from .errors import Span, TPError, did_you_mean
from .rules import RULES

SPECIAL_FUNCTIONS = ("avg", "layernorm", "sum", "mean")


# ---- meanings of expressions -------------------------------------------------------------------


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
class _Family:
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


def _as_int(value: sympy.Expr) -> int | None:
    return int(value) if value.is_Integer else None


# ---- the elaborator ----------------------------------------------------------------------------


class Elaborator:
    def __init__(self, overrides: Mapping[str, object] | None = None) -> None:
        self.overrides = {k: to_number(v, k) for k, v in (overrides or {}).items()}
        self.params: dict[str, sympy.Expr] = {}
        self.families: dict[str, _Family] = {}
        self.defs: dict[str, S.DefStmt] = {}
        self.input: ir.Input | None = None
        self.readout: ir.Readout | None = None
        self.output: str | None = None
        self.values: dict[str, Meaning] = {}  # assigned names: "h" or "h[3]" or "b[1,2]"
        self.assigned_at: dict[str, Span] = {}
        self.family_of: dict[str, bool] = {}  # assigned base name -> indexed?
        self.scopes: list[dict[str, Meaning]] = []
        self.instrs: list[ir.Instr] = []
        self.memo: dict[tuple, str] = {}
        self.weights: dict[str, ir.Weight] = {}
        self.kinds: dict[str, str] = {}  # value name -> G/H/C
        self.later: dict[str, Span] = {}  # every name declared or assigned anywhere
        self.call_stack: list[str] = []
        self.temps = 0

    # -- statements --

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
        if self.output is None:
            raise TPError("the program has no `output`", hint="end with e.g. `output relu(h)`")
        readout = self.readout or ir.Readout(sympy.Integer(1), sympy.Integer(0), None)
        return ir.Program(
            self.input,
            tuple(self.weights.values()),
            tuple(self.instrs),
            self.output,
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
                self.input = ir.Input(name, shape, tuple(lo for lo, _ in bounds), span)
            case S.DeclStmt(kind, name, ranges, dist, span):
                self._fresh_name(name, span)
                (mean, var), = self.distributions(dist, 1)
                if kind == "weight" and mean != 0:
                    raise TPError(
                        "weights have mean 0",
                        dist.span,
                        "write N(0, var); the second number is the variance",
                    )
                bounds = tuple(self.range_(r) for r in ranges)
                self.families[name] = _Family(kind, name, bounds, mean, var, span)
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
                    with self.scope({var: Num(sympy.Integer(i))}):
                        for inner in body:
                            self.stmt(inner, top=False)
            case S.OutputStmt(value, span):
                if self.output is not None:
                    raise TPError("a second `output`", span, "a program has exactly one output")
                meaning = self.ev(value)
                if not isinstance(meaning, Vec):
                    raise TPError(
                        f"the output must be a vector, not {_describe(meaning)}", value.span
                    )
                self.output = self.materialize(meaning, value.span)

    def _check_trip_count(self, lo: int, hi: int, span: Span) -> None:
        if hi - lo + 1 > MAX_INSTRUCTIONS:
            raise TPError(
                f"the range {lo}..{hi} has more than {MAX_INSTRUCTIONS} elements", span
            )

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
                f"`{key}` is assigned {_describe(meaning)}; only vectors and scalars can be named",
                stmt.value.span,
            )
        self.assigned_at[key] = span
        self.values[key] = self.bind(key, meaning, mark, stmt.span)

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

    # -- instructions --

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

    def affine(self, expr: sympy.Expr) -> tuple[tuple[tuple[sympy.Expr, str], ...], sympy.Expr] | None:  # noqa: E501
        """(terms, const) if expr is an affine function of G values with number coefficients."""
        names = self._args(expr)
        if any(self.kinds[n] != "G" for n in names):
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
            first, here = ("data", "hidden vectors") if existing.on_data else (
                "hidden vectors",
                "data",
            )
            raise TPError(
                f"`{mat.name}` is applied to {here} here but to {first} at line "
                f"{existing.span.line}",
                span,
                "a matrix applied to data is n×d, one applied to hidden vectors n×n: "
                "declare separate weights",
            )

    def matmul(self, left: Meaning, right: Meaning, node: S.BinOp) -> Vec:
        if not isinstance(left, Mat):
            raise TPError(
                f"the left side of `@` must be a weight matrix, not {_describe(left)}",
                node.left.span,
            )
        if isinstance(right, Data):
            self.weight_use(left, True, node.span)
            key = ("embed", left.name, right.position)
            if key not in self.memo:
                self._emit(ir.Embed(self._temp(), left.name, right.position, node.span), key)
            return Vec(ir.symbol(self.memo[key]))
        if isinstance(right, Mat):
            raise TPError(
                "a product of two matrices",
                node.span,
                "apply matrices to vectors one at a time: `W @ (V @ h)` is written `W @ V @ h`",
            )
        if not isinstance(right, Vec):
            raise TPError(
                f"matmul of {_describe(right)}: a matrix multiplies a vector",
                node.right.span,
            )
        self.weight_use(left, False, node.span)
        arg = self.materialize(right, node.right.span)
        if self.kinds[arg] == "C":  # pragma: no cover - Vec never materializes to C
            raise TPError("matmul of a scalar", node.right.span)
        key = ("matmul", left.name, arg)
        if key not in self.memo:
            self._emit(ir.MatMul(self._temp(), left.name, arg, node.span), key)
        return Vec(ir.symbol(self.memo[key]))

    # -- expressions --

    def number(self, e: S.Expr, what: str) -> sympy.Expr:
        meaning = self.ev(e)
        if not isinstance(meaning, Num):
            raise TPError(f"{what} must be a number, not {_describe(meaning)}", e.span)
        return meaning.value

    def integer(self, e: S.Expr) -> int:
        meaning = self.ev(e)
        if not isinstance(meaning, Num):
            raise TPError(
                f"an index or loop bound must be a compile-time integer, not {_describe(meaning)}",
                e.span,
                "indices are computed from params, numbers and loop variables",
            )
        value = _as_int(meaning.value)
        if value is None:
            raise TPError(
                f"an index or loop bound must be an integer, got {ir.format_expr(meaning.value)}",
                e.span,
            )
        return value

    def range_(self, r: S.Range) -> tuple[int, int]:
        return self.integer(r.lo), self.integer(r.hi)

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
            if not (var.is_real and var >= 0):
                raise TPError("a variance must be a number >= 0", p.args[1].span)
            out.append((mean, var))
        return out

    def lookup(self, name: str, span: Span) -> Meaning | _Family | S.DefStmt | ir.Input:
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

    def ev(self, e: S.Expr) -> Meaning:
        method: Callable[[S.Expr], Meaning] = getattr(self, "ev_" + type(e).__name__)
        return method(e)

    def ev_Number(self, e: S.Number) -> Meaning:
        return Num(number(e.text, e.span))

    def ev_Name(self, e: S.Name) -> Meaning:
        found = self.lookup(e.name, e.span)
        if isinstance(found, ir.Input):
            if found.shape:
                raise TPError(
                    f"the input `{e.name}` is indexed; use `{e.name}[...]`", e.span
                )
            return Data(0, e.name)
        if isinstance(found, _Family):
            if found.ranges:
                raise TPError(f"`{e.name}` is a family; index it like `{e.name}[...]`", e.span)
            return self.instance(found, e.name, e.span)
        if isinstance(found, S.DefStmt):
            raise TPError(f"`{e.name}` is a function; call it like `{e.name}(h)`", e.span)
        return found

    def ev_Index(self, e: S.Index) -> Meaning:
        found = self.lookup(e.name, e.span) if e.name not in self.family_of else None
        idx = [self.integer(i) for i in e.indices]
        if isinstance(found, ir.Input | _Family):
            ranges = (
                tuple((lo, lo + n - 1) for lo, n in zip(found.lows, found.shape, strict=True))
                if isinstance(found, ir.Input)
                else found.ranges
            )
            if len(idx) != len(ranges):
                what = "is not indexed" if not ranges else f"takes {len(ranges)} index(es)"
                raise TPError(f"`{e.name}` {what}", e.span)
            for i, (lo, hi), node in zip(idx, ranges, e.indices, strict=True):
                if not lo <= i <= hi:
                    raise TPError(
                        f"index {i} is outside the declared range {lo}..{hi} of `{e.name}`",
                        node.span,
                    )
            text = f"{e.name}[{','.join(map(str, idx))}]"
            if isinstance(found, ir.Input):
                flat = 0
                for i, (lo, hi) in zip(idx, ranges, strict=True):
                    flat = flat * (hi - lo + 1) + (i - lo)
                return Data(flat, text)
            return self.instance(found, text, e.span)
        if found is not None:
            raise TPError(f"`{e.name}` is not a family and cannot be indexed", e.span)
        key = f"{e.name}[{','.join(map(str, idx))}]"
        if not self.family_of[e.name]:
            raise TPError(f"`{e.name}` is not a family and cannot be indexed", e.span)
        if key not in self.values:
            raise TPError(
                f"`{key}` is not defined (yet)",
                e.span,
                "every element of a family is assigned before it is used",
            )
        return self.values[key]

    def instance(self, fam: _Family, text: str, span: Span) -> Meaning:
        if fam.kind == "weight":
            return Mat(text, fam.name)
        key = ("bias", text)
        if key not in self.memo:
            self._emit(ir.Bias(text, fam.mean, fam.var, fam.span), key)
        return Vec(ir.symbol(self.memo[key]))

    def ev_Unary(self, e: S.Unary) -> Meaning:
        value = self._operand(self.ev(e.operand), e.operand, e.op)
        if e.op == "+":
            return value
        return type(value)(-_payload(value))

    def ev_BinOp(self, e: S.BinOp) -> Meaning:
        left, right = self.ev(e.left), self.ev(e.right)
        if e.op == "@":
            return self.matmul(left, right, e)
        left = self._operand(left, e.left, e.op)
        right = self._operand(right, e.right, e.op)
        return self.arith(e.op, left, right, e)

    def _operand(self, m: Meaning, node: S.Expr, op: str) -> Num | Vec | Scal:
        if isinstance(m, Data):
            raise TPError(
                f"data `{m.text}` used in `{op}`",
                node.span,
                "data enters the program only through a matmul, like `U @ x`",
            )
        if isinstance(m, Mat):
            raise TPError(
                f"the matrix `{m.name}` is used as a value",
                node.span,
                "matrices only multiply vectors: `W @ h`",
            )
        return m

    def arith(self, op: str, a: Num | Vec | Scal, b: Num | Vec | Scal, e: S.BinOp) -> Meaning:
        x, y = _payload(a), _payload(b)
        rank = max(_RANK[type(a)], _RANK[type(b)])
        result_type = {0: Num, 1: Scal, 2: Vec}[rank]
        if op in ("+", "-"):
            return result_type(x + y if op == "+" else x - y)
        if op == "*":
            return result_type(x * y)
        if op == "/":
            if isinstance(b, Vec):
                raise TPError(
                    "division by a vector",
                    e.right.span,
                    "divide by numbers or scalars (e.g. avg(...)); for 1/h use a def",
                )
            if isinstance(b, Num) and y == 0:
                raise TPError("division by zero", e.right.span)
            return result_type(x / y)
        if op in ("//", "%"):
            if not (isinstance(a, Num) and isinstance(b, Num)):
                raise TPError(f"`{op}` is for numbers (index arithmetic)", e.span)
            if y == 0:
                raise TPError("division by zero", e.right.span)
            return Num(sympy.floor(x / y) if op == "//" else sympy.Mod(x, y))
        assert op == "**"
        if not isinstance(b, Num):
            raise TPError(f"an exponent must be a number, not {_describe(b)}", e.right.span)
        if isinstance(a, Vec) and not (y.is_Integer and y >= 0):
            raise TPError(
                "a vector's power must be a whole number >= 0",
                e.right.span,
                "use relu_pow(h, k) for powers of relu",
            )
        if isinstance(a, Num) and x == 0 and y.is_negative:
            raise TPError("division by zero", e.span)
        if not (y.is_real and abs(y) <= (64 if isinstance(a, Vec) else MAX_EXPONENT)):
            raise TPError("this exponent is too large", e.right.span)
        if isinstance(a, Num) and abs(x) > 1 and float(y) * float(sympy.log(abs(x), 10)) > 400:
            raise TPError("this number is out of range", e.span)
        return result_type(x**y)

    def ev_Compare(self, e: S.Compare) -> Meaning:
        raise TPError(
            "a comparison outside a filter",
            e.span,
            "comparisons are used in comprehension filters: sum(e for i in 1..n if i != 2)",
        )

    ev_BoolOp = ev_Compare

    def condition(self, e: S.Expr) -> bool:
        if isinstance(e, S.BoolOp):
            if e.op == "not":
                return not self.condition(e.left)
            if e.op == "and":
                return self.condition(e.left) and self.condition(e.right)
            return self.condition(e.left) or self.condition(e.right)
        if isinstance(e, S.Compare):
            a = self.number(e.left, "a compared value")
            b = self.number(e.right, "a compared value")
            ops = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge}
            if e.op in ops:
                return bool(ops[e.op](a, b))
            return bool(sympy.Eq(a, b)) == (e.op == "==")
        raise TPError("a filter must be a comparison", e.span, "e.g. `if 1 <= p + k - 2`")

    def ev_Comprehension(self, e: S.Comprehension) -> Meaning:
        if e.func not in ("sum", "mean"):
            raise TPError(
                f"`{e.func}` does not take a comprehension",
                e.func_span,
                "only sum(...) and mean(...) do",
            )
        lo, hi = self.range_(e.range)
        if any(e.var in s for s in self.scopes) or e.var in self.params:
            raise TPError(f"`{e.var}` is already defined", e.range.span)
        self._check_trip_count(lo, hi, e.range.span)
        total: Meaning | None = None
        count = 0
        for i in range(lo, hi + 1):
            with self.scope({e.var: Num(sympy.Integer(i))}):
                if e.cond is not None and not self.condition(e.cond):
                    continue
                term = self._operand(self.ev(e.body), e.body, e.func)
            total = term if total is None else self.arith("+", total, term, _fake_binop(e))
            count += 1
        if total is None:
            raise TPError(f"this {e.func}(...) has no terms", e.span, "check its range and filter")
        if e.func == "mean":
            return type(total)(_payload(total) / count)
        return total

    def ev_Call(self, e: S.Call) -> Meaning:
        if e.func == "N":
            raise TPError("N(mean, var) is only used in declarations", e.span)
        if e.func in ("sum", "mean"):
            raise TPError(
                f"`{e.func}` takes a comprehension",
                e.span,
                f"e.g. {e.func}(relu(h[t]) for t in 1..T)",
            )
        if e.func == "avg":
            self._arity(e, 1, 1)
            vec = self._vector_arg(e, 0)
            return Scal(self.moment(vec.expr, e.span))
        if e.func == "layernorm":
            self._arity(e, 1, 2)
            vec = self._vector_arg(e, 0)
            eps = self.number(e.args[1], "eps") if len(e.args) == 2 else number("1e-5")
            mean = self.moment(vec.expr, e.span)
            second = self.moment(vec.expr**2, e.span)
            return Vec((vec.expr - mean) / sympy.sqrt(second - mean**2 + eps))
        if e.func in self.defs or any(e.func in s for s in self.scopes):
            return self.call_def(e)
        rule = RULES.get(e.func)
        if rule is None:
            self.lookup(e.func, e.func_span)  # raises "unknown name" or "used before"
            raise TPError(f"`{e.func}` is not a function", e.func_span)
        self._arity(e, 1 + len(rule.numbers), 1 + len(rule.numbers))
        arg = self._operand(self.ev(e.args[0]), e.args[0], e.func)
        nums = [
            self.number(a, f"argument `{n}`")
            for a, n in zip(e.args[1:], rule.numbers, strict=True)
        ]
        problem = rule.check(*nums)
        if problem:
            raise TPError(problem, e.span)
        if isinstance(arg, Vec):
            if not rule.vector:
                raise TPError(f"`{e.func}` applies to scalars, not vectors", e.span)
            inner = arg.expr
            if not inner.is_Symbol and self.affine(inner) is not None:
                inner = ir.symbol(self.materialize(arg, e.args[0].span))
            return Vec(rule.build(inner, *nums))
        return type(arg)(rule.build(_payload(arg), *nums))

    def moment(self, expr: sympy.Expr, span: Span) -> sympy.Expr:
        key = ("C", expr)
        if key not in self.memo:
            self._emit(ir.Moment(self._temp(), expr, self._args(expr), span), key)
        return ir.symbol(self.memo[key])

    def _arity(self, e: S.Call, least: int, most: int) -> None:
        n = len(e.args)
        if not least <= n <= most:
            want = str(least) if least == most else f"{least} or {most}"
            raise TPError(
                f"`{e.func}` takes {want} argument{'s' if most > 1 else ''}, got {n}", e.span
            )

    def _vector_arg(self, e: S.Call, i: int) -> Vec:
        arg = self._operand(self.ev(e.args[i]), e.args[i], e.func)
        if not isinstance(arg, Vec):
            raise TPError(f"`{e.func}` takes a vector, not {_describe(arg)}", e.args[i].span)
        return arg

    def call_def(self, e: S.Call) -> Meaning:
        d = self.defs.get(e.func)
        if d is None:
            raise TPError(f"`{e.func}` is not a function", e.func_span)
        if e.func in self.call_stack:
            raise TPError(f"`{e.func}` calls itself", e.span, "defs are inlined: no recursion")
        self._arity(e, len(d.params), len(d.params))
        args = {p: self.ev(a) for p, a in zip(d.params, e.args, strict=True)}
        self.call_stack.append(e.func)
        saved, self.scopes = self.scopes, [args]  # a def sees its parameters and globals only
        try:
            return self.ev(d.body)
        finally:
            self.scopes = saved
            self.call_stack.pop()


_RANK = {Num: 0, Scal: 1, Vec: 2}


def _payload(m: Num | Vec | Scal) -> sympy.Expr:
    return m.value if isinstance(m, Num) else m.expr


def _fake_binop(e: S.Comprehension) -> S.BinOp:
    return S.BinOp("+", e.body, e.body, e.span)


def _describe(m: object) -> str:
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


def elaborate(module: S.Module, params: Mapping[str, object] | None = None) -> ir.Program:
    """Type-check and unroll a parsed program into the IR."""
    return Elaborator(params).run(module)
