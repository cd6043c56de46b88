"""The family evaluator's passes in stages: which quantities are computed together.

Where this sits: `codegen/tensor.py` evaluates a template program's kernel graph block by block;
this module cuts each pass into stages, each one compiled function (or, for numerical
quantities, one eager call of the runtime's rules), and says what each stage hands on.

Why stages. Within one compiled function XLA fuses an elementwise producer into each of its
readers: a closed form read by the three gathers of a convolution's taps was computed three
times (measured: 4x slower than materialising it first). Across compiled functions it is
computed once. So whatever reads a closed form runs in a later stage than it. Numerical
quantities (`NumericSpec`) run eagerly, as the scalar path's generated modules run them: their
rules choose their sizes from the values they are given (`runtime/mehler.py`), which a traced
function cannot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tpcompile.kernels.graph import ClosedForm, KernelGraph, NumericSpec, refs


@dataclass(frozen=True)
class Stage:
    nodes: tuple[int, ...]
    eager: bool  # numerical quantities, evaluated outside any compiled function


@dataclass(frozen=True)
class Plan:
    """`stages[i]` and `keep[i]`: the quantities computed up to stage i that a later stage or a
    kernel reads (what stage i hands on)."""

    stages: tuple[Stage, ...]
    keep: tuple[tuple[int, ...], ...]


def plan(
    graph: KernelGraph, nodes: set[int], read_at_end: Iterable[int], sides: tuple[str, ...]
) -> Plan:
    """The stages of the quantities `nodes` (each reading only earlier ones and those outside
    `nodes`, given to the pass); `read_at_end`: what the kernels read; `sides`: the references
    that read the pass's own values (the cross pass reads its L and R inputs, the diagonal pass
    its own values at every side)."""
    reads = {
        k: {j for side, j in refs(graph.nodes[k].formula) if side in sides and j in nodes}
        for k in nodes
    }
    eager = {k: isinstance(graph.nodes[k].formula, NumericSpec) for k in nodes}
    level: dict[int, int] = {}
    for k in sorted(nodes):  # a quantity's references are earlier nodes
        # an eager quantity needs its inputs materialised, so it runs after their stage; a
        # closed form's (or an eager quantity's) readers run after it
        level[k] = max(
            (level[j] + (eager[k] or eager[j] or _closed(graph, j)) for j in reads[k]), default=0
        )
    order = sorted({(level[k], eager[k]) for k in nodes})
    index = {key: i for i, key in enumerate(order)}
    stage_of = {k: index[level[k], eager[k]] for k in nodes}
    stages = tuple(
        Stage(tuple(k for k in sorted(nodes) if stage_of[k] == i), e)
        for i, (_, e) in enumerate(order)
    )
    last = len(stages)
    last_read = {k: last for k in read_at_end if k in stage_of}
    for k in nodes:
        for j in reads[k]:
            last_read[j] = max(last_read.get(j, 0), stage_of[k])
    keep = tuple(
        tuple(k for k in sorted(nodes) if stage_of[k] <= i < last_read.get(k, -1))
        for i in range(last)
    )
    return Plan(stages, keep)


def _closed(graph: KernelGraph, k: int) -> bool:
    return isinstance(graph.nodes[k].formula, ClosedForm)


__all__ = ["Plan", "Stage", "plan"]
