"""The language's builtin nonlinearities: a live view of the records of `tpcompile.prims`.

Where this sits: the elaborator's name checks, "did you mean" hints and builtin calls
(`RULES[name].build(x, *numbers)`, after `RULES[name].check(*numbers)`) read `RULES`. The records
themselves, one per nonlinearity, live in `prims/table.py`; registering one there makes it a
builtin here with no other change.
"""

from __future__ import annotations

from collections.abc import Mapping

from tpcompile.prims import Prim, language_builtins

__all__ = ["RULES", "rule_names"]

#: name -> record, for every nonlinearity a program may call (a live view of the registry).
RULES: Mapping[str, Prim] = language_builtins


def rule_names() -> list[str]:
    """Names of all builtin nonlinearities, sorted (for name checks and hints)."""
    return sorted(RULES)
