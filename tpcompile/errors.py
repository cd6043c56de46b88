"""User-facing errors: one base class for every mistake in a `.tp` program or in kernel inputs.

Every stage of the pipeline (parse, elaborate, analyse, kernel inputs) raises `TPError` with a span
and a message; the API edge (`tpcompile.compile`, the CLI) attaches the source text and file name,
so `str(err)` renders the familiar

    file.tp:3:9: error: unknown name `rleu`
        h = rleu(W @ x)
            ^^^^
    hint: did you mean `relu`?

Bugs inside tpcompile are any other exception; the CLI reports those as "internal error".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of source text: 1-based line and column of its first and last character + 1."""

    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def point(line: int, col: int) -> Span:
        return Span(line, col, line, col + 1)


class TPError(Exception):
    """A mistake in the user's program or inputs (never a bug in tpcompile)."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.source: str | None = None
        self.filename: str = "<string>"

    def with_source(self, source: str, filename: str) -> TPError:
        """Attach the program text (done once, at the API edge)."""
        if self.source is None:
            self.source = source
            self.filename = filename
        return self

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        where = self.filename
        if self.span is not None:
            where += f":{self.span.line}:{self.span.col}"
        lines = [f"{where}: error: {self.message}"]
        if self.span is not None and self.source is not None:
            source_lines = self.source.splitlines()
            if 1 <= self.span.line <= len(source_lines):
                text = source_lines[self.span.line - 1].expandtabs(4).rstrip()
                start = self.span.col - 1
                stop = self.span.end_col - 1 if self.span.end_line == self.span.line else len(text)
                width = max(1, min(stop, max(len(text), start + 1)) - start)
                lines.append("    " + text)
                lines.append("    " + " " * start + "^" * width)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class KernelInputError(TPError):
    """Bad arrays given to a kernel function (shape, dtype, NaN, ...)."""


class ResourceLimitError(KernelInputError):
    """Inputs whose kernels would not fit in memory, refused before anything is allocated."""


class NonFiniteKernelError(KernelInputError):
    """A kernel came out inf or NaN (overflow from huge variances or inputs); the message names
    the first kernel quantity, in evaluation order, that is not finite."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint naming the closest candidate, if one is close enough."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
