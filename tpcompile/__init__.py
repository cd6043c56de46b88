"""tpcompile: a tensor-program compiler for the infinite-width NNGP and NTK of any architecture.

Pipeline, one folder per stage: `lang/` (text -> IR) -> `ir/` -> `kernels/` (the Master
Theorem) -> `codegen/` (a JAX module) -> `runtime/` (what that module imports); `finite/` builds
the same IR as a finite network. Start with `tpcompile.compile(source)`.

Importing tpcompile imports nothing heavy: `load_program` loads the front end (sympy, lark) and
`compile`/`Compiled` the kernel compiler (JAX) on first use; the front end and `tpcompile check`
never import JAX.
"""

from __future__ import annotations

from typing import Any

from tpcompile.errors import TPError

__all__ = ["Compiled", "TPError", "compile", "load_program", "predict"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Loaded on first use: the front end needs sympy and lark, the kernel compiler JAX.
    if name == "load_program":
        from tpcompile.lang.frontend import load_program

        return load_program
    if name in ("compile", "Compiled"):
        from tpcompile import api

        return getattr(api, name)
    if name == "predict":  # `tpcompile.predict.gp_inference(...)` after `import tpcompile`
        import importlib

        return importlib.import_module("tpcompile.predict")
    raise AttributeError(f"module 'tpcompile' has no attribute {name!r}")
