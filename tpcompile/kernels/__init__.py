"""Stage 3: the Master Theorem at compile time (sympy), from the IR to a graph of kernel
quantities.

`graph.py` holds the graph and its typed references; the rules that fill it are `forward.py`
(means and covariances, by instruction type), `expect.py` (Gaussian expectations: the reduction
order), `numeric.py` (the numerical rule of what stays, planned by `plan.py`), `backward.py`
(the NTK) and `param.py` (the parameterization); `closed_forms/` is the closed-form table.
"""

from __future__ import annotations

import sympy

from tpcompile import ir
from tpcompile.kernels.backward import backward_coefficients, nngp, ntk
from tpcompile.kernels.expect import expect
from tpcompile.kernels.graph import KernelGraph
from tpcompile.kernels.param import NTK, Parameterization
from tpcompile.kernels.plan import NumericOptions


def analyse(
    program: ir.Program, options: NumericOptions | None = None, param: Parameterization = NTK
) -> tuple[KernelGraph, sympy.Expr, sympy.Expr]:
    """The kernel graph of `program` with its NNGP and NTK formulas."""
    graph = KernelGraph(program, expect, options or NumericOptions(), param)
    graph.refuse_unsupported()
    graph.backward = backward_coefficients(program, param)
    return graph, nngp(graph), ntk(graph)


__all__ = ["KernelGraph", "analyse"]
