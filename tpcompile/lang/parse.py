"""Stage 1 of the pipeline: `.tp` source text -> syntax tree (`syntax.Module`).

Lark (LALR, grammar file `lang/tp.lark`) does the parsing; this module converts its tree to
our frozen dataclasses with spans and turns Lark's exceptions into `TPError`s with a position,
a readable description of what was expected, and a hint. No checks beyond the grammar happen
here: that is the elaborator's job.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Iterator
from importlib import resources

import lark
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from tpcompile.errors import Span, TPError
from tpcompile.lang import limits
from tpcompile.lang import syntax as S


class _IgnoreNewlinesInBrackets:
    """Post-lexer: newlines inside ( ) or [ ] continue the line, as in Python."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth > 0:
                continue
            yield tok


@functools.cache
def _parser() -> lark.Lark:
    grammar = resources.files("tpcompile.lang").joinpath("tp.lark").read_text()
    return lark.Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        postlex=_IgnoreNewlinesInBrackets(),
        propagate_positions=True,
        maybe_placeholders=False,
    )


def parse(source: str) -> S.Module:
    """Parse program text into a syntax tree, or raise TPError on a syntax error."""
    try:
        tree = _parser().parse(source if source.endswith("\n") else source + "\n")
    except UnexpectedInput as exc:
        raise _syntax_error(exc, source) from None
    _check_nesting(tree)  # the conversion below recurses once per level
    return S.Module(tuple(_stmt(child) for child in tree.children))


def _check_nesting(tree: Tree) -> None:
    """Refuse trees nested deeper than `limits.MAX_NESTING`, walking them without recursion.

    Lark's LALR parser builds any depth iteratively; a flat chain `a + b + c` (nested to the
    left by the grammar) counts as one level, because `_binop` and the evaluator loop over it.
    """
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.MAX_NESTING:
            what = {"call": "calls", "comprehension": "calls", "for_": "loops"}.get(
                str(node.data), "expressions"
            )
            raise TPError(
                f"{what} nest more than {limits.MAX_NESTING} levels deep here",
                _span(node.children[0]) if node.data == "call" else Span.point(*_start(node)),
                None
                if what == "loops"
                else "name intermediate values (h1 = relu(...), then h2 = relu(h1)) to flatten "
                "deep expressions",
            )
        for i, child in enumerate(node.children):
            if isinstance(child, Tree):
                flat = i == 0 and child.data == node.data == "binop"
                stack.append((child, depth if flat else depth + 1))


# ---- syntax errors -----------------------------------------------------------------------------

_TOKEN_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "_NL": "a new line",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "COMMA": "`,`",
    "EQUAL": "`=`",
    "TILDE": "`~`",
    "ADD": "`+` or `-`",
    "MUL": "an operator",
    "COMPARE": "a comparison",
    "$END": "the end of the program",
}


# Characters that word processors substitute for ASCII ones.
_LOOKALIKES = {
    "\u2212": "this is a Unicode minus sign; write `-`",
    "\u2013": "this is a dash; write `-`",
    "\u00d7": "write `*` to multiply (or `@` for a matrix)",
    "\u00a0": "this is a non-breaking space; write an ordinary space",
    "\ufeff": "this is a byte-order mark; save the text without it",
    "\u2026": "this is an ellipsis character; ranges are written 1..3",
}


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token_type]
    pattern = _parser().get_terminal(token_type).pattern
    return f"`{pattern.value}`" if pattern.type == "str" else token_type.lower()


def _expected(names: set[str]) -> str:
    words = sorted({_describe(n) for n in names if not n.startswith("__")})
    if len(words) > 6:
        return "expected " + ", ".join(words[:6]) + ", ..."
    return "expected " + " or ".join(words) if words else ""


def _end_of_program(expected: set[str], source: str) -> TPError:
    lines = source.splitlines() or [""]
    return TPError(
        "unexpected end of the program; " + _expected(expected),
        Span.point(len(lines), len(lines[-1]) + 1),
        "is a `)` or `}` missing?",
    )


def _syntax_error(exc: UnexpectedInput, source: str) -> TPError:
    if isinstance(exc, UnexpectedCharacters):
        char = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else "?"
        hint = "strings are not part of the language" if char in "\"'‘’“”" else None
        if char == "." and source[exc.pos_in_stream : exc.pos_in_stream + 2] != "..":
            hint = "numbers are written like 0.5 (a digit before the point); ranges like 1..3"
        shown = f"`{char}`"
        if not char.isascii() or not char.isprintable():
            shown = f"U+{ord(char):04X} ({unicodedata.name(char, 'a control character')})"
            hint = hint or _LOOKALIKES.get(
                char,
                "outside comments, programs are plain ASCII"
                if not char.isascii()
                else "control characters are not part of the language",
            )
            shown = shown if char.isspace() or not char.isprintable() else f"`{char}` {shown}"
        return TPError(f"unexpected character {shown}", Span.point(exc.line, exc.column), hint)
    if isinstance(exc, UnexpectedEOF):
        return _end_of_program(set(exc.expected), source)
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    if tok.type == "$END":
        return _end_of_program(exc.expected, source)
    shown = "end of line" if tok.type == "_NL" else f"`{tok.value}`"
    span = Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1)
    if tok.type == "_NL":
        span = Span.point(tok.line, tok.column)
    hint = None
    if tok.type == "_NL":
        hint = "a statement ends with its line; wrap a long expression in ( ) to continue it"
    elif tok.type == "EQUAL" and "EQUAL" not in exc.expected:
        hint = "use `==` to compare; `=` assigns, one name per statement"
    elif tok.type == "NAME" and tok.value in ("N",) and "TILDE" in exc.expected:
        hint = "declarations are written `weight W ~ N(0, 1)`"
    message = f"unexpected {shown}"
    expected = _expected(exc.expected)
    if expected:
        message += "; " + expected
    return TPError(message, span, hint)


# ---- tree conversion ---------------------------------------------------------------------------


def _span(node: Tree | Token) -> Span:
    if isinstance(node, Token):
        return Span(node.line, node.column, node.end_line or node.line, node.end_column or 0)
    m = node.meta
    return Span(m.line, m.column, m.end_line, m.end_column)


def _start(node: Tree) -> tuple[int, int]:
    return node.meta.line, node.meta.column


def _tokens(tree: Tree, kind: str) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token) and c.type == kind]


def _trees(tree: Tree, kind: str | None = None) -> list[Tree]:
    return [c for c in tree.children if isinstance(c, Tree) and (kind is None or c.data == kind)]


def _range(tree: Tree) -> S.Range:
    lo, hi = tree.children
    return S.Range(_expr(lo), _expr(hi), _span(tree))


def _stmt(tree: Tree) -> S.Stmt:
    kind, span = tree.data, _span(tree)
    names = _tokens(tree, "NAME")
    if kind == "param":
        return S.ParamStmt(names[0].value, _expr(tree.children[1]), span)
    if kind == "input":
        return S.InputStmt(names[0].value, tuple(_range(r) for r in _trees(tree, "range")), span)
    if kind in ("weight", "bias"):
        ranges = tuple(_range(r) for r in _trees(tree, "range"))
        return S.DeclStmt(str(kind), names[0].value, ranges, _expr(tree.children[-1]), span)
    if kind == "readout":
        return S.ReadoutStmt(_expr(tree.children[0]), span)
    if kind == "def_":
        params = (
            tuple(t.value for t in _tokens(_trees(tree, "names")[0], "NAME"))
            if _trees(tree, "names")
            else ()
        )
        return S.DefStmt(names[0].value, params, _expr(tree.children[-1]), span)
    if kind == "assign":
        target, *indices, value = tree.children
        return S.AssignStmt(
            target.value, tuple(_expr(i) for i in indices), _expr(value), span, _span(target)
        )
    if kind == "for_":
        var, rng, *body = tree.children
        return S.ForStmt(var.value, _range(rng), tuple(_stmt(s) for s in body), span)
    if kind == "output":
        return S.OutputStmt(_expr(tree.children[0]), span)
    raise AssertionError(f"unknown statement {kind}")


def _expr(node: Tree | Token) -> S.Expr:
    span = _span(node)
    if isinstance(node, Token):  # a lone NAME or NUMBER inlined by `?atom`
        if node.type == "NUMBER":
            return S.Number(node.value, span)
        return S.Name(node.value, span)
    rule = _EXPRESSIONS.get(node.data)
    if rule is None:
        raise AssertionError(f"unknown expression {node.data}")
    return rule(node.children, span)


def _comprehension(ch: list, span: Span) -> S.Expr:
    func, body, var, rng, *cond = ch
    return S.Comprehension(
        func.value,
        _expr(body),
        var.value,
        _range(rng),
        _expr(cond[0]) if cond else None,
        span,
        _span(func),
    )


def _binop(ch: list, span: Span) -> S.Expr:
    """A left-nested chain `a + b - c ...`, converted by a loop: it may be thousands long."""
    chain = [(ch, span)]
    while isinstance(ch[0], Tree) and ch[0].data == "binop":
        ch, span = ch[0].children, _span(ch[0])
        chain.append((ch, span))
    result = _expr(chain[-1][0][0])
    for ch, span in reversed(chain):
        result = S.BinOp(ch[1].value, result, _expr(ch[2]), span)
    return result


# One converter per expression rule of the grammar.
_EXPRESSIONS: dict[str, Callable[[list, Span], S.Expr]] = {
    "number": lambda ch, span: S.Number(ch[0].value, span),
    "name": lambda ch, span: S.Name(ch[0].value, span),
    "index": lambda ch, span: S.Index(ch[0].value, tuple(_expr(c) for c in ch[1:]), span),
    "call": lambda ch, span: S.Call(
        ch[0].value, tuple(_expr(c) for c in ch[1:]), span, _span(ch[0])
    ),
    "comprehension": _comprehension,
    "binop": lambda ch, span: _binop(ch, span),
    "matmul": lambda ch, span: S.BinOp("@", _expr(ch[0]), _expr(ch[1]), span),
    "power": lambda ch, span: S.BinOp("**", _expr(ch[0]), _expr(ch[1]), span),
    "unary": lambda ch, span: S.Unary(ch[0].value, _expr(ch[1]), span),
    "compare": lambda ch, span: S.Compare(ch[1].value, _expr(ch[0]), _expr(ch[2]), span),
    "or_": lambda ch, span: S.BoolOp("or", _expr(ch[0]), _expr(ch[1]), span),
    "and_": lambda ch, span: S.BoolOp("and", _expr(ch[0]), _expr(ch[1]), span),
    "not_": lambda ch, span: S.BoolOp("not", _expr(ch[0]), None, span),
}
