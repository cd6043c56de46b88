"""tpcompile: a tensor-program compiler for the infinite-width NNGP and NTK of any architecture.

Pipeline (one module per stage): parse -> elaborate -> ir -> analysis -> emit -> kernel_fn,
and the same IR -> finite-width network. Start with `tpcompile.compile(source)`.
"""

from __future__ import annotations

from typing import Any

from .errors import TPError
from .frontend import load_program

__all__ = ["Compiled", "TPError", "compile", "load_program"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The kernel compiler imports JAX; the front end (check, ir) should not pay for that.
    if name in ("compile", "Compiled"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'tpcompile' has no attribute {name!r}")
