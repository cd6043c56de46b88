"""Closed-form Gaussian expectations E[f(u) g(v)] and E[f(u)], written once in sympy.

Where this sits: the expectation rules (`kernels/expect.py`) ask `pair_expectation` and
`mean_expectation` for every pair of atoms they cannot reduce by algebra; `table.py` holds the
engines, `cases.py` the catalogue of supported cases that tests and docs iterate.
"""

from tpcompile.kernels.closed_forms.table import (
    S11,
    S12,
    S22,
    U,
    V,
    mean_expectation,
    pair_expectation,
)

__all__ = ["S11", "S12", "S22", "U", "V", "mean_expectation", "pair_expectation"]
