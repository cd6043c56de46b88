"""tpcompile: a tensor-program compiler for the infinite-width NNGP and NTK of any architecture.

Pipeline, one folder per stage: `lang/` (text -> IR) -> `ir/` -> `kernels/` (the Master
Theorem) -> `codegen/` (a JAX module) -> `runtime/` (what that module imports); `finite/` builds
the same IR as a finite network. Start with `tpcompile.compile(source)`.

Importing tpcompile does not import JAX: the front end (`load_program`, `tpcompile check`) runs
without it, and `compile`/`Compiled` load the kernel compiler on first use.
"""

from __future__ import annotations

from typing import Any

from tpcompile.errors import TPError
from tpcompile.lang.frontend import load_program

__all__ = ["Compiled", "TPError", "compile", "load_program"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("compile", "Compiled"):
        from tpcompile import api

        return getattr(api, name)
    raise AttributeError(f"module 'tpcompile' has no attribute {name!r}")
