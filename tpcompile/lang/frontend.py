"""The front end as one call: source text -> IR, with error context attached at this edge.

`parse` and `elaborate` raise `TPError`s that know their span but not the file they came from;
`load_program` adds the source and file name so the error renders with the line and a caret.

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
from tpcompile.lang.elaborate import elaborate
from tpcompile.lang.parse import parse

CHECK_IR = os.environ.get("TPCOMPILE_CHECK_IR") == "1"


def load_program(
    source: str, params: Mapping[str, object] | None = None, filename: str = "<string>"
) -> Program:
    """Parse and elaborate a program; raises TPError with source context on any mistake."""
    try:
        program = elaborate(parse(source), params)
    except TPError as err:
        raise err.with_source(source, filename) from None
    if CHECK_IR:
        check_program(program)
    return program


def read_source(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise TPError(f"cannot read {path}: {exc.strerror}") from None
