"""The syntax tree of a `.tp` program: what `parse` produces and `elaborate` consumes.

Nodes are frozen dataclasses carrying the span of the source text they came from. They record
what was written and nothing more: names are not resolved, loops are not unrolled, and no
check beyond the grammar has been made.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpcompile.errors import Span

# ---- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    text: str
    span: Span


@dataclass(frozen=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True)
class Index:
    name: str
    indices: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class Range:
    lo: Expr
    hi: Expr
    span: Span


@dataclass(frozen=True)
class Comprehension:
    """`func(body for var in range if cond)`, with func `sum` or `mean`."""

    func: str
    body: Expr
    var: str
    range: Range
    cond: Expr | None
    span: Span
    func_span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / // % @ **
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Unary:
    op: str  # + or -
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Compare:
    op: str  # < <= > >= == !=
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class BoolOp:
    op: str  # and, or, not (right is None for not)
    left: Expr
    right: Expr | None
    span: Span


Expr = Number | Name | Index | Call | Comprehension | BinOp | Unary | Compare | BoolOp

# ---- statements --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamStmt:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class InputStmt:
    name: str
    ranges: tuple[Range, ...]
    span: Span


@dataclass(frozen=True)
class DeclStmt:
    """`weight` or `bias` declaration: `kind name[ranges] ~ dist`."""

    kind: str
    name: str
    ranges: tuple[Range, ...]
    dist: Expr
    span: Span


@dataclass(frozen=True)
class ReadoutStmt:
    dist: Expr
    span: Span


@dataclass(frozen=True)
class DefStmt:
    name: str
    params: tuple[str, ...]
    body: Expr
    span: Span


@dataclass(frozen=True)
class AssignStmt:
    name: str
    indices: tuple[Expr, ...]
    value: Expr
    span: Span
    target_span: Span


@dataclass(frozen=True)
class ForStmt:
    var: str
    range: Range
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class OutputStmt:
    value: Expr
    span: Span


Stmt = ParamStmt | InputStmt | DeclStmt | ReadoutStmt | DefStmt | AssignStmt | ForStmt | OutputStmt


@dataclass(frozen=True)
class Module:
    body: tuple[Stmt, ...]
