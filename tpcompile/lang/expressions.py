"""Stage 2, part 2: evaluating expressions of the language to meanings (values.py).

Arithmetic follows the types: numbers fold at compile time, vectors stay sympy expressions over G
values, scalars over C values; matrices only multiply vectors and data only enters through a matrix.
Builtin calls read the builtins (`builtins.py`, the records of `prims/`); `def`s are inlined;
comprehensions are unrolled. Name resolution is the elaborator's (`lookup`), which subclasses this.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from tpcompile import ir
from tpcompile.errors import Span, TPError
from tpcompile.lang import syntax as S
from tpcompile.lang import values as _values
from tpcompile.lang.builtins import RULES
from tpcompile.lang.values import (
    MAX_EXPONENT,
    RANK,
    Data,
    Family,
    Mat,
    Meaning,
    Num,
    ProgramBuilder,
    Scal,
    Vec,
    as_int,
    describe,
    number,
    payload,
)


class ExpressionEvaluator(ProgramBuilder):
    """Evaluates expressions; subclasses provide `lookup` (names) and `scope` (bindings)."""

    defs: dict[str, S.DefStmt]
    scopes: list[dict[str, Meaning]]
    params: dict[str, sympy.Expr]
    family_of: dict[str, bool]
    values: dict[str, Meaning]
    call_stack: list[str]

    def lookup(self, name: str, span: Span) -> object:  # pragma: no cover - overridden
        raise NotImplementedError

    def matmul(self, left: Meaning, right: Meaning, node: S.BinOp) -> Vec:
        if not isinstance(left, Mat):
            raise TPError(
                f"the left side of `@` must be a weight matrix, not {describe(left)}",
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
                f"matmul of {describe(right)}: a matrix multiplies a vector",
                node.right.span,
            )
        self.weight_use(left, False, node.span)
        arg = self.materialize(right, node.right.span)
        key = ("matmul", left.name, arg)
        if key not in self.memo:
            self._emit(ir.MatMul(self._temp(), left.name, arg, node.span), key)
        return Vec(ir.symbol(self.memo[key]))

    def number(self, e: S.Expr, what: str) -> sympy.Expr:
        meaning = self.ev(e)
        if not isinstance(meaning, Num):
            raise TPError(f"{what} must be a number, not {describe(meaning)}", e.span)
        return meaning.value

    def integer(self, e: S.Expr) -> int:
        meaning = self.ev(e)
        if not isinstance(meaning, Num):
            raise TPError(
                f"an index or loop bound must be a compile-time integer, not {describe(meaning)}",
                e.span,
                "indices are computed from params, numbers and loop variables",
            )
        value = as_int(meaning.value)
        if value is None:
            raise TPError(
                f"an index or loop bound must be an integer, got {ir.format_expr(meaning.value)}",
                e.span,
            )
        return value

    def range_(self, r: S.Range) -> tuple[int, int]:
        return self.integer(r.lo), self.integer(r.hi)

    def _check_trip_count(self, lo: int, hi: int, span: Span) -> None:
        if hi - lo + 1 > _values.MAX_INSTRUCTIONS:
            raise TPError(
                f"the range {lo}..{hi} has more than {_values.MAX_INSTRUCTIONS} elements", span
            )

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

    def ev(self, e: S.Expr) -> Meaning:
        method: Callable[[S.Expr], Meaning] = getattr(self, "ev_" + type(e).__name__)
        return method(e)

    def ev_Number(self, e: S.Number) -> Meaning:
        return Num(number(e.text, e.span))

    def ev_Name(self, e: S.Name) -> Meaning:
        found = self.lookup(e.name, e.span)
        if isinstance(found, ir.Input):
            if found.shape:
                raise TPError(f"the input `{e.name}` is indexed; use `{e.name}[...]`", e.span)
            return Data(0, e.name)
        if isinstance(found, Family):
            if found.ranges:
                raise TPError(f"`{e.name}` is a family; index it like `{e.name}[...]`", e.span)
            return self.instance(found, e.name, e.span)
        if isinstance(found, S.DefStmt):
            raise TPError(f"`{e.name}` is a function; call it like `{e.name}(h)`", e.span)
        return found

    def ev_Index(self, e: S.Index) -> Meaning:
        found = self.lookup(e.name, e.span) if e.name not in self.family_of else None
        idx = [self.integer(i) for i in e.indices]
        if isinstance(found, ir.Input | Family):
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

    def ev_Unary(self, e: S.Unary) -> Meaning:
        value = self._operand(self.ev(e.operand), e.operand, e.op)
        if e.op == "+":
            return value
        return type(value)(-payload(value))

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
        x, y = payload(a), payload(b)
        rank = max(RANK[type(a)], RANK[type(b)])
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
            raise TPError(f"an exponent must be a number, not {describe(b)}", e.right.span)
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
            return type(total)(payload(total) / count)
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
            self.number(a, f"argument `{n}`") for a, n in zip(e.args[1:], rule.numbers, strict=True)
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
        return type(arg)(rule.build(payload(arg), *nums))

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
            raise TPError(f"`{e.func}` takes a vector, not {describe(arg)}", e.args[i].span)
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


def _fake_binop(e: S.Comprehension) -> S.BinOp:
    return S.BinOp("+", e.body, e.body, e.span)
