"""The front end's limits, and the checks that enforce them without recursing or hanging.

Why limits at all: a program is unrolled at compile time and its nonlinearities are composed into
sympy expressions, which sympy (and the kernel compiler after it) walk recursively. Without
bounds a typo (`T = 50000000`), a deeply nested expression or a def that calls another def twice
would end in a Python `RecursionError`, an exponential blow-up or a hang. Every bound here is
generous for real networks and is stated in its error message. Tests lower them with
`monkeypatch.setattr(limits, ...)`, so code reads them as `limits.NAME` at call time.
"""

from __future__ import annotations

import math

import sympy

from tpcompile.errors import Span, TPError

#: Nesting of one expression or of loops, as written (parenthesised groups add nothing; a flat
#: chain `a + b + c` is one level): 100 is far beyond any real program, and keeps the front end
#: within Python's default recursion limit of 1000 frames, with room for the caller's frames.
MAX_NESTING = 100

#: Depth of a composed nonlinearity: `c[t]` of an LSTM contains `c[t-1]` and grows by two levels a
#: step (T = 59 fits). The kernel compiler differentiates these with sympy, about six Python frames
#: a level: 120 keeps the whole pipeline, not only the front end, inside the default recursion
#: limit of 1000 (a chain of 130 relus was the most `tpcompile emit` managed).
MAX_EXPR_DEPTH = 120

#: Size of a composed nonlinearity written out as a tree (shared subexpressions counted at every
#: use): defs or assignments that use a value twice per step double it, and sympy's walks are
#: per tree node. An LSTM step adds about 9 nodes.
MAX_EXPR_SIZE = 20_000

#: Total work of unrolling: loop iterations (nested loops multiply), comprehension terms and
#: evaluated expressions (inlined defs re-evaluate their bodies). Real programs take 5–15 steps
#: per instruction (so 50 000 instructions fit); the cheapest steps take about 5 µs.
MAX_STEPS = 1_000_000

#: Positions of the input (`input x[1..H, 1..W]` has H·W): one row of data per position per
#: example, and kernels cost positions² work. 65 536 is a 256×256 image.
MAX_POSITIONS = 65_536

#: Index ranges of the input: the data array has two more axes (examples, features).
MAX_INPUT_AXES = 8

#: Elements of one declared weight or bias family: each one used costs an instruction, so a
#: larger family is a typo in its bounds.
MAX_FAMILY = 1_000_000

#: Digits of a number literal, and of exact numbers computed at compile time (10^400 is far
#: beyond float64's 1.8e308, and Python refuses to convert integers of over 4300 digits).
MAX_DIGITS = 400

#: Characters (or bytes) of a program's text: programs are written by people (the examples are
#: about 1 KB), and the parser reads some 5 MB a second, so a data file given by mistake is refused
#: at once instead of being parsed for minutes.
MAX_SOURCE = 10_000_000

_MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 8


class LimitError(TPError):
    """A limit of this module was reached (the call site of an inlined def is blamed for it)."""


def check_number(value: sympy.Expr, span: Span | None) -> None:
    """A compile-time number must stay a real number within `MAX_DIGITS` digits."""
    if value.is_Rational:
        if max(abs(value.p).bit_length(), value.q.bit_length()) > _MAX_BITS:
            raise TPError(
                f"this number is out of range (more than {MAX_DIGITS} digits)",
                span,
                "compile-time numbers are exact; keep them within float64's range",
            )
        return
    info = _float(value)
    if info is None:
        raise TPError("this is not a real number", span, "e.g. a negative number to a power 1/2")
    if not math.isfinite(info) or abs(info) > 10.0**300:
        raise TPError(f"this number is out of range ({_show(value)})", span)


def finite(value: sympy.Expr, what: str, span: Span | None) -> None:
    """Numbers that reach the kernels (variances, means, coefficients) must be float64-finite."""
    f = _float(value)
    if f is None:
        raise TPError(f"{what} is not a real number", span)
    if not math.isfinite(f):
        raise TPError(
            f"{what} {_show(value)} is too large for float64 (at most about 1.8e308)",
            span,
            "kernels are computed in floating point; rescale the program",
        )


def show_int(n: int) -> str:
    """An integer for a message: 10**300 as 1.00e+300, not three hundred digits."""
    text = str(abs(n))
    if len(text) > 15:
        text = f"{text[0]}.{text[1:3]}e+{len(text) - 1}"
    return "-" + text if n < 0 else text


def _float(value: sympy.Expr) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # complex, or not a number at all
        return None
    except OverflowError:
        return math.inf


def _show(value: sympy.Expr) -> str:
    if value.is_Rational and value.q == 1 and abs(value.p).bit_length() < 64:
        return str(value)
    try:
        return str(sympy.Float(value.evalf(5), 3)).lower()
    except (TypeError, ValueError):
        return "this"


class ExprLimits:
    """Depth, tree size and finite coefficients of composed expressions, memoised per node.

    Each new expression is walked iteratively down to nodes already seen, so checking every
    intermediate value of a program costs time linear in the number of distinct nodes.
    """

    def __init__(self) -> None:
        self._seen: dict[sympy.Basic, tuple[int, int, bool]] = {}  # depth, size, numeric?

    def check(self, expr: sympy.Expr, span: Span | None) -> None:
        seen = self._seen
        if expr in seen:
            return
        stack: list[tuple[sympy.Basic, bool]] = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in seen:
                continue
            args = node.args
            if args and not ready:
                stack.append((node, True))
                stack.extend((a, False) for a in args if a not in seen)
                continue
            infos = [seen[a] for a in args]
            depth = 1 + max((i[0] for i in infos), default=0)
            size = 1 + sum(i[1] for i in infos)
            numeric = node.is_Number or (bool(args) and all(i[2] for i in infos))
            if depth > MAX_EXPR_DEPTH:
                raise LimitError(
                    f"this expression composes functions more than {MAX_EXPR_DEPTH} deep",
                    span,
                    "a named nonlinear value is inlined into every use; pass it through a "
                    "matrix (W @ h) to start a new layer, or shorten the recurrence",
                )
            if size > MAX_EXPR_SIZE:
                raise LimitError(
                    f"this expression grows to more than {MAX_EXPR_SIZE} terms when its "
                    "defs and named nonlinear values are inlined",
                    span,
                    "values used twice per step double in size; pass them through a matrix "
                    "(W @ h) to start a new layer",
                )
            if not numeric:
                for a, info in zip(args, infos, strict=True):
                    if info[2]:
                        finite(a, "the coefficient", span)
            seen[node] = (depth, size, numeric)


def expansion_size(expr: sympy.Expr, cap: int) -> int:
    """An upper bound on the terms of `expand(expr)`, or `cap` once it reaches cap (iterative)."""
    sizes: dict[sympy.Basic, int] = {}
    stack: list[tuple[sympy.Basic, bool]] = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in sizes:
            continue
        if node.args and not ready and not node.is_Function:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args)
            continue
        if node.is_Add:
            n = sum(sizes[a] for a in node.args)
        elif node.is_Mul:
            n = 1
            for a in node.args:
                n *= sizes[a]
        elif node.is_Pow and node.exp.is_Integer and node.exp > 0:
            base = sizes[node.base]
            n = base ** min(int(node.exp), 64) if base > 1 else 1
        else:
            n = 1
        sizes[node] = min(n, cap)
    return sizes[expr]
