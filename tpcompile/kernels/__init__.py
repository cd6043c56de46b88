"""Stage 3: the Master Theorem at compile time (sympy), from the IR to a graph of kernel
quantities.

`graph.py` holds the graph and its typed references; the rules that fill it are `forward.py`
(means and covariances, by instruction type), `expect.py` (Gaussian expectations: the reduction
order), `numeric.py` (the numerical rule of what stays, planned by `plan.py`), `backward.py`
(the NTK) and `param.py` (the parameterization); `closed_forms/` is the closed-form table.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import sympy

from tpcompile import ir
from tpcompile.kernels.backward import backward_coefficients, nngp, ntk
from tpcompile.kernels.expect import expect
from tpcompile.kernels.graph import KernelGraph
from tpcompile.kernels.param import NTK, Parameterization
from tpcompile.kernels.plan import NumericOptions

Analysis = tuple[KernelGraph, sympy.Expr, sympy.Expr]
R = TypeVar("R")

#: The rules are recursive and demand-driven: a quantity of a recurrence asks for the same
#: quantity one step earlier, some 17 Python frames further down, so the depth grows with the
#: program: measured at most 4.3 frames per instruction (an Elman RNN of 100 steps, 400
#: instructions, needs 1719 frames; a 100-layer MLP 1323). Programs that may need more than the
#: interpreter's limit run with a budget of 10 per instruction, and the C stack for it.
_FRAMES_PER_INSTR = 10
_FRAMES_BASE = 500  # the caller's frames, and sympy's own recursion into an expression
_STACK_BYTES = 512 * 1024 * 1024  # address space only: pages are committed as they are used

_depth_lock = threading.Lock()
_deep_runs = 0  # analyses running with a raised recursion limit
_saved_limit = 0


def analyse(
    program: ir.Program, options: NumericOptions | None = None, param: Parameterization = NTK
) -> Analysis:
    """The kernel graph of `program` with its NNGP and NTK formulas."""
    frames = _FRAMES_BASE + _FRAMES_PER_INSTR * len(program.instrs)
    if frames <= sys.getrecursionlimit():
        return _analyse(program, options, param)
    return _with_deep_stack(lambda: _analyse(program, options, param), frames)


def _analyse(
    program: ir.Program, options: NumericOptions | None, param: Parameterization
) -> Analysis:
    graph = KernelGraph(program, expect, options or NumericOptions(), param)
    graph.refuse_unsupported()
    graph.backward = backward_coefficients(program, param)
    return graph, nngp(graph), ntk(graph)


def _with_deep_stack(run: Callable[[], R], frames: int) -> R:
    """run() in a thread with a large stack, the recursion limit raised to `frames` meanwhile
    (and restored when the last such run ends: the limit is global to the interpreter)."""
    global _deep_runs, _saved_limit
    outcome: list[R] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(run())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(exc)

    worker = threading.Thread(target=target, name="tpcompile-analyse", daemon=True)
    with _depth_lock:  # the stack size applies to threads started while it is set
        try:
            previous = threading.stack_size(_STACK_BYTES)
        except (ValueError, RuntimeError):  # a platform that refuses it: the plain call
            previous = None
        if previous is not None:
            try:
                if _deep_runs == 0:
                    _saved_limit = sys.getrecursionlimit()
                _deep_runs += 1
                sys.setrecursionlimit(max(sys.getrecursionlimit(), frames))
                worker.start()
            except BaseException:
                _deep_runs -= 1
                if _deep_runs == 0:
                    sys.setrecursionlimit(_saved_limit)
                raise
            finally:
                threading.stack_size(previous)
    if previous is None:
        return run()
    try:
        worker.join()
    finally:
        with _depth_lock:
            _deep_runs -= 1
            if _deep_runs == 0:
                sys.setrecursionlimit(_saved_limit)
    if failure:
        raise failure[0]
    return outcome[0]


__all__ = ["KernelGraph", "analyse"]
