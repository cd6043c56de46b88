"""The front end as one call: source text -> IR, with error context attached at this edge.

`parse` and `elaborate` raise `TPError`s that know their span but not the file they came from;
`load_program` adds the source and file name so the error renders with the line and a caret.
Text is decoded and normalised by `source.py` first, so encodings and line ends change nothing.

With `CHECK_IR` on (the tests turn it on; `TPCOMPILE_CHECK_IR=1` in the environment does too),
every elaborated program is checked against the IR's invariants (`ir/check.py`), as JAX's
`jax_enable_checks` runs `check_jaxpr`: a broken invariant is then a bug caught where it is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tpcompile.errors import TPError
from tpcompile.ir import Program
from tpcompile.ir.check import check_program
from tpcompile.lang import limits
from tpcompile.lang.elaborate import elaborate
from tpcompile.lang.parse import parse
from tpcompile.lang.source import check_size, decode, display, file_name_hint, normalize, read

CHECK_IR = os.environ.get("TPCOMPILE_CHECK_IR") == "1"


def load_program(
    source: str | bytes, params: Mapping[str, object] | None = None, filename: str = "<string>"
) -> Program:
    """Parse and elaborate a program; raises TPError with source context on any mistake.

    `source` is the program's text (bytes are decoded as a file's would be). Line ends and a
    byte-order mark do not change its meaning.
    """
    if isinstance(source, bytes | bytearray):
        source = decode(bytes(source), filename)
    elif not isinstance(source, str):
        hint = None
        if isinstance(source, os.PathLike):
            hint = f"read the file first: load_program(read_source({str(source)!r}))"
        raise TPError(
            f"the program must be text (a str), not {type(source).__name__}", hint=hint
        ).with_source("", filename)
    check_size(len(source), filename)
    text = normalize(source)
    try:
        try:
            program = elaborate(parse(text), params)
        except RecursionError:
            # The limits of `limits.py` keep real programs well inside Python's recursion limit;
            # this is the net for whatever combination of them still reaches it.
            raise TPError(
                "the program nests too deeply for tpcompile to compile",
                hint=f"nesting is limited to {limits.MAX_NESTING} levels and composed "
                f"functions to {limits.MAX_EXPR_DEPTH}; name intermediate values or pass "
                "them through a matrix",
            ) from None
    except TPError as err:
        if err.span is not None and err.span.line == 1:
            err.hint = file_name_hint(text) or err.hint
        raise err.with_source(display(text), filename) from None
    if CHECK_IR:
        check_program(program)
    return program


def read_source(path: str | Path) -> str:
    """A program file's text, decoded as UTF-8 (with or without a byte-order mark), never with
    the locale's encoding; a TPError, with the line and column of the first bad byte, if not."""
    return read(path)
