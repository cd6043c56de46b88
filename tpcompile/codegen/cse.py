"""Readable generated code: shared subexpressions named, long sums split, the same bits.

Where this sits: the code generator (`codegen/module.py`) prints closed forms with `print_block`
(a subexpression the text would repeat gets a line `t0 = ...` of its own) and long kernel sums
with `print_sum` (a running partial sum, a few terms a line). Both compute the same
floating-point operations in the same order as the one-line text of `jaxprint.to_jax`, so the
numbers are bitwise the same; `tests/test_codegen.py` checks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy

from tpcompile.codegen.jaxprint import JaxPrinter, join_terms, to_jax

__all__ = ["ENABLE_CSE", "SUM_TERMS_PER_LINE", "print_block", "print_sum"]

#: When False, `print_block` names nothing and `print_sum` never splits: every expression is
#: printed inline on one line, exactly as `to_jax` prints it. Only tests switch it off, to check
#: that the shared-subexpression printing computes the same bits as the plain one.
ENABLE_CSE: bool = True

#: Terms per line when `print_sum` splits a long sum into a running partial sum.
SUM_TERMS_PER_LINE: int = 16


class _SharingPrinter(JaxPrinter):
    """A `JaxPrinter` that writes every subexpression printed two or more times once, as a line
    `t0 = <text>`, and uses the name wherever the text appeared.

    Why whole nodes and not `sympy.cse`: cse rebuilds the expressions (and sympy then reorders the
    arguments of the new Mul and Add nodes), so the floating-point operations would change. Here a
    name stands for the text of one existing node, printed by the same methods as before with its
    named subnodes replaced by their names: the evaluation is the same, operation for operation.
    Texts that are not one operand in their context (`_print_spliced`) are never named.

    Two passes over the same expressions. Pass 1 (`_counting`) prints with memoisation and
    counts, per node, how often the printer asks for it; a memo hit does not recurse, exactly as
    a named node is not printed again in pass 2, so the counts are those of the final output.
    Pass 2 prints for real: the first request for a counted-twice node prints it and records its
    line (after the lines of its own named subnodes, so the lines come in dependency order), the
    later requests get its name. Printing is a deterministic function of the node, and both
    passes make the same requests in the same order, so the names are consistent.
    """

    def __init__(self, names: Mapping[sympy.Symbol, str] | None, taken: set[str]) -> None:
        super().__init__(names)
        self._taken = taken | set(self._names.values())
        self._counting = True
        self._uses: dict[sympy.Expr, int] = {}
        self._memo: dict[sympy.Expr, str] = {}
        self._shared: set[sympy.Expr] = set()
        self._given: dict[sympy.Expr, str] = {}
        self._next = 0
        self._made: set[str] = set()
        self.lines: list[str] = []

    @staticmethod
    def _nameable(expr: Any) -> bool:
        # Atoms and constants print as a name or a literal already; naming them gains nothing.
        return isinstance(expr, sympy.Expr) and bool(expr.args) and not expr.is_number

    def start_printing(self) -> None:
        """End pass 1: the nodes requested at least twice get names in pass 2."""
        self._counting = False
        self._shared = {e for e, n in self._uses.items() if n >= 2}
        self._memo.clear()

    def _new_name(self) -> str:
        while f"t{self._next}" in self._taken:
            self._next += 1
        name = f"t{self._next}"
        self._taken.add(name)
        self._made.add(name)
        return name

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if kwargs or not self._nameable(expr):
            return super()._print(expr, **kwargs)
        if self._counting:
            if expr in self._memo:
                self._uses[expr] += 1
                return self._memo[expr]
            self._uses[expr] = 1
            text = self._memo[expr] = super()._print(expr)
            return text
        if expr not in self._shared:
            return super()._print(expr)
        if expr in self._given:
            return self._given[expr]
        text = super()._print(expr)
        name = self._new_name()
        self._given[expr] = name
        self.lines.append(f"{name} = {text}")
        return name

    def _print_spliced(self, expr: sympy.Expr) -> str:
        return super()._print(expr)  # JaxPrinter's: this node itself is neither counted nor named

    def _print_repeated(self, expr: sympy.Expr, uses: int) -> str:
        text = self._print(expr)
        if self._counting and expr in self._uses:
            self._uses[expr] += uses - 1
        return text

    def _operand(self, text: str) -> str:
        return text if text in self._made else super()._operand(text)

    def parenthesize(self, item: Any, level: int, strict: bool = False) -> str:
        # A name is one operand already: `t0*t1`, not `(t0)*t1` (the same code either way).
        if not self._counting and self._nameable(item) and item in self._shared:
            return self._print(item)
        return super().parenthesize(item, level, strict)


def _prepare(expr: Any) -> sympy.Expr:
    """What `CodePrinter.doprint` prints for `expr` (sympified, UnevaluatedExpr unwrapped)."""
    return JaxPrinter()._handle_UnevaluatedExpr(sympy.sympify(expr))


def print_block(
    exprs: Sequence[sympy.Expr] | Mapping[str, sympy.Expr],
    names: Mapping[sympy.Symbol, str] | None = None,
    *,
    cse: bool | None = None,
) -> tuple[list[str], list[str]]:
    """Print several expressions with their shared subexpressions named: (lines, results).

    `lines` are assignments `t0 = ...`, `t1 = ...` in dependency order, to be written before the
    results; `results` are the texts of `exprs` (in order; a mapping's values in its order).
    A subexpression gets a line when the plain printer (`to_jax`) would write its text two or
    more times, counting the arguments that `SafeSqrt` and `SafeDiv` write three times. Each
    line is the node's plain text with named subnodes replaced by their names, so the values
    are bitwise those of `to_jax`. `cse=False` (default: the module switch `ENABLE_CSE`) prints
    every expression with `to_jax` and returns no lines. Generated names avoid `names`' values
    and the symbols' own names.
    """
    items = [_prepare(e) for e in (exprs.values() if isinstance(exprs, Mapping) else exprs)]
    if not (ENABLE_CSE if cse is None else cse):
        return [], [to_jax(e, dict(names or {})) for e in items]
    taken = {str(s) for e in items for s in e.free_symbols}
    printer = _SharingPrinter(names, taken)
    for e in items:
        printer._print(e)
    printer.start_printing()
    results = [printer._print(e) for e in items]
    return printer.lines, results


def print_sum(
    expr: sympy.Expr,
    names: Mapping[sympy.Symbol, str] | None,
    target: str,
    per_line: int | None = None,
) -> tuple[list[str], str]:
    """Print `expr`; a sum of more than `per_line` terms becomes a running partial sum.

    Returns (lines, text): `lines` assign `target` (`target = a + b ...`, then
    `target = target + c ...`), and `text` is the value's text, `target` itself when split (else
    the whole expression, and no lines). The terms come in the order of the one-line text and
    Python adds left to right, so each line continues the very same chain of additions: the
    value is bitwise that of the one-line sum. Why split: a sum of thousands of terms printed on
    one line makes the generated module unreadable (and its lines unmanageable for editors and
    diffs). `per_line` defaults to `SUM_TERMS_PER_LINE`; with `ENABLE_CSE` off nothing is split.
    """
    expr = _prepare(expr)
    per_line = SUM_TERMS_PER_LINE if per_line is None else per_line
    printer = JaxPrinter(names)
    plain = not ENABLE_CSE or per_line < 1 or expr.is_number or not expr.is_Add
    if plain or len(expr.args) <= per_line:
        return [], printer.doprint(expr)
    terms = printer._add_terms(expr)
    lines = [f"{target} = {join_terms(terms[:per_line])}"]
    for start in range(per_line, len(terms), per_line):
        chunk = "".join(f" {s} {t}" for s, t in terms[start : start + per_line])
        lines.append(f"{target} = {target}{chunk}")
    return lines, target
