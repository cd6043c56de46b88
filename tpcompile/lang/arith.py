"""Arithmetic on meanings (`values.py`): the type rules of `+ - * / // % **`.

Numbers fold exactly at compile time, vectors and scalars stay sympy expressions. A chain of
`+`/`-` (a written-out sum, or a `sum(...)` comprehension) is added in one `sympy.Add`: adding
term by term re-sorts the growing sum each time, quadratic in its length, and the syntax tree of
a long left-associative chain is walked by a loop, not by recursion (`add_chain`).
"""

from __future__ import annotations

import sympy

from tpcompile.errors import TPError
from tpcompile.lang import syntax as S
from tpcompile.lang.values import MAX_EXPONENT, RANK, Num, Scal, Vec, describe, payload


def add_all(terms: list[tuple[int, Num | Vec | Scal]]) -> Num | Vec | Scal:
    """sign1·t1 + sign2·t2 + ...: the type of the highest-ranked term, built in one Add."""
    rank = max(RANK[type(t)] for _, t in terms)
    result_type = {0: Num, 1: Scal, 2: Vec}[rank]
    return result_type(sympy.Add(*(payload(t) if s > 0 else -payload(t) for s, t in terms)))


def left_chain(e: S.BinOp) -> tuple[S.Expr, list[S.BinOp]]:
    """`a + b - c * d` as its first operand and the operations applied to it, left to right.

    Only the left-associative operators chain; `@` and `**` bind to the right.
    """
    chain: list[S.BinOp] = []
    node: S.Expr = e
    while isinstance(node, S.BinOp) and node.op not in ("@", "**"):
        chain.append(node)
        node = node.left
    chain.reverse()
    return node, chain


def arith(op: str, a: Num | Vec | Scal, b: Num | Vec | Scal, e: S.BinOp) -> Num | Vec | Scal:
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
    if isinstance(a, Num) and x.is_negative and not y.is_Integer:
        raise TPError("a negative number to a fractional power is not a real number", e.span)
    if not (y.is_real and abs(y) <= (64 if isinstance(a, Vec) else MAX_EXPONENT)):
        raise TPError("this exponent is too large", e.right.span)
    if isinstance(a, Num) and abs(x) > 1 and float(y) * float(sympy.log(abs(x), 10)) > 400:
        raise TPError("this number is out of range", e.span)
    return result_type(x**y)
