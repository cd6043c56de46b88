"""The nonlinearities: sympy primitives (`functions.py`) and ONE record per nonlinearity
(`record.py` the type and registry, `table.py` the records), read by every stage.

Importing this package registers the table.
"""

from tpcompile.prims import table as _table  # noqa: F401 - registers the records
from tpcompile.prims.record import (
    Prim,
    by_function,
    language_builtins,
    lookup,
    records,
    register,
    temporarily,
)

__all__ = [
    "Prim",
    "by_function",
    "language_builtins",
    "lookup",
    "records",
    "register",
    "temporarily",
]
