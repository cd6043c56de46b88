"""Stage 2, part 2: evaluating expressions of the language to meanings (values.py).

Arithmetic follows the types: numbers fold at compile time, vectors stay sympy expressions over G
values, scalars over C values; matrices only multiply vectors and data only enters through a matrix.
Builtin calls read the builtins (`builtins.py`, the records of `prims/`); `def`s are inlined;
comprehensions are unrolled. Name resolution is the elaborator's (`lookup`), which subclasses this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import sympy

from tpcompile import ir
from tpcompile.errors import Span, TPError
from tpcompile.lang import limits
from tpcompile.lang import syntax as S
from tpcompile.lang import values as _values
from tpcompile.lang.arith import add_all, arith, left_chain
from tpcompile.lang.builtins import RULES
from tpcompile.lang.values import (
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

M = TypeVar("M", bound=Meaning)


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
                f"the range {limits.show_int(lo)}..{limits.show_int(hi)} has more than "
                f"{_values.MAX_INSTRUCTIONS} elements",
                span,
            )

    def step(self, span: Span, loop: bool = False) -> None:
        """Count one unit of unrolling work: a loop iteration or an evaluated expression."""
        self.steps += 1
        if self.steps > limits.MAX_STEPS:
            if loop:
                raise TPError(
                    f"the loops run more than {limits.MAX_STEPS} iterations in total",
                    span,
                    "nested loops multiply: check this loop's bounds and those around it",
                )
            raise limits.LimitError(
                f"unrolling the program takes more than {limits.MAX_STEPS} steps",
                span,
                "loops, comprehensions and inlined defs multiply; a def that calls another "
                "def twice doubles the work at every level",
            )

    def ev(self, e: S.Expr) -> Meaning:
        """The meaning of `e`, within the limits of `limits.py` (nesting, work, sizes)."""
        method: Callable[[S.Expr], Meaning] = getattr(self, "ev_" + type(e).__name__)
        self.step(e.span)
        if self.nesting >= limits.MAX_NESTING:  # only inlined defs get here: parse checks the rest
            raise limits.LimitError(
                f"expressions nest more than {limits.MAX_NESTING} levels deep here, counting "
                "inlined defs",
                e.span,
                "a def's body is inlined at each call; name intermediate values to flatten it",
            )
        self.nesting += 1
        try:
            meaning = method(e)
        finally:
            self.nesting -= 1
        return self.checked(meaning, e.span)

    def checked(self, meaning: M, span: Span) -> M:
        """`meaning`, once its number or expression is within the limits of `limits.py`."""
        if isinstance(meaning, Num):
            limits.check_number(meaning.value, span)
        elif isinstance(meaning, Vec | Scal):
            self.expr_limits.check(meaning.expr, span)
        return meaning

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
        if e.op in ("@", "**"):
            left, right = self.ev(e.left), self.ev(e.right)
            if e.op == "@":
                return self.matmul(left, right, e)
            left = self._operand(left, e.left, e.op)
            return arith(e.op, left, self._operand(right, e.right, e.op), e)
        # A chain `a + b - c * d ...` (Lark nests it to the left, one level per operator) is
        # folded by this loop, left to right, and each run of `+ -` is added in one Add.
        first, chain = left_chain(e)
        head = self.ev(first)
        acc: Num | Vec | Scal | None = None
        terms: list[tuple[int, Num | Vec | Scal]] = []
        for node in chain:
            right = self.ev(node.right)  # both sides are evaluated before either is checked
            if acc is None:
                acc = self._operand(head, first, node.op)
            right = self._operand(right, node.right, node.op)
            if node.op in ("+", "-"):
                terms = terms or [(1, acc)]
                terms.append((1 if node.op == "+" else -1, right))
                continue
            if terms:
                acc, terms = add_all(terms), []
            acc = self.checked(arith(node.op, acc, right, node), node.span)  # 1e400 * 1e400 * ...
        return add_all(terms) if terms else (acc if acc is not None else head)

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
            try:
                if e.op in ops:
                    return bool(ops[e.op](a, b))
                return bool(sympy.Eq(a, b)) == (e.op == "==")
            except TypeError:  # sympy could not decide, e.g. between transcendental numbers
                raise TPError("this comparison cannot be decided exactly", e.span) from None
        raise TPError("a filter must be a comparison", e.span, "e.g. `if 1 <= p + k - 2`")

    def terms(self, e: S.Comprehension) -> list[tuple[Meaning, S.Expr]]:
        """The meaning of the body of `e` at each index its range and filter keep."""
        lo, hi = self.range_(e.range)
        if any(e.var in s for s in self.scopes) or e.var in self.params:
            raise TPError(f"`{e.var}` is already defined", e.range.span)
        self._check_trip_count(lo, hi, e.range.span)
        out = []
        for i in range(lo, hi + 1):
            self.step(e.range.span, loop=True)
            with self.scope({e.var: Num(sympy.Integer(i))}):
                if e.cond is None or self.condition(e.cond):
                    out.append((self.ev(e.body), e.body))
        if not out:
            raise TPError(f"this {e.func}(...) has no terms", e.span, "check its range and filter")
        return out

    def ev_Comprehension(self, e: S.Comprehension) -> Meaning:
        if e.func not in ("sum", "mean"):  # flatten(...) is the output's own (elaborate.py)
            what, hint = (
                (
                    "is a readout, only the whole of an `output`",
                    "e.g. `output flatten(h[p] for p in 1..P)`",
                )
                if e.func == "flatten"
                else ("does not take a comprehension", "only sum(...) and mean(...) do")
            )
            raise TPError(f"`{e.func}(...)` {what}", e.func_span, hint)
        terms = [(1, self._operand(m, body, e.func)) for m, body in self.terms(e)]
        total = add_all(terms)
        if e.func == "mean":
            return type(total)(payload(total) / len(terms))
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
        except limits.LimitError as err:
            if len(self.call_stack) == 1:  # blame the outermost call, not a def's body
                err.span, err.message = e.span, f"{err.message} (inlining `{e.func}`)"
                err.args = (err.message,)
            raise
        finally:
            self.scopes = saved
            self.call_stack.pop()
