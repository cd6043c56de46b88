"""The front end as one call: source text -> IR, with error context attached at this edge.

`parse` and `elaborate` raise `TPError`s that know their span but not the file they came from;
`load_program` adds the source and file name so the error renders with the line and a caret.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .elaborate import elaborate
from .errors import TPError
from .ir import Program
from .parse import parse


def load_program(
    source: str, params: Mapping[str, object] | None = None, filename: str = "<string>"
) -> Program:
    """Parse and elaborate a program; raises TPError with source context on any mistake."""
    try:
        return elaborate(parse(source), params)
    except TPError as err:
        raise err.with_source(source, filename) from None


def read_source(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise TPError(f"cannot read {path}: {exc.strerror}") from None
