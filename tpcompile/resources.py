"""How big a program's kernels are, and whether they fit in memory: refuse before allocating.

Where this sits: read by `api.kernel_fn`, and by `tpcompile check` (`size_report`), which never
imports JAX; so neither does this module (the kernel analysis it may run is sympy only).

The estimate follows the generated module (`codegen/module.py`): `cross` keeps every pair quantity
it computes as an N1×N2 array until it returns, `diagonal` one array of length N per quantity
(Hermite coefficients: one row of terms per input), and the inputs are copied once. TEMPORARIES
more grids cover what the numerical rules hold while they run (their chunks are bounded by
`runtime.basics.chunk_size`) and the symmetrisation of K(X, X).

The limit is, in order: $TPCOMPILE_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix), the memory the
kernel reports available (/proc/meminfo MemAvailable, and a cgroup's memory.max), physical memory
(sysconf). With none of them known, nothing is refused.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpcompile.errors import ResourceLimitError
from tpcompile.ir import Embed, Program

TEMPORARIES = 8  # extra N1×N2 grids alive at once, beyond the quantities themselves
HERMITE_TERMS = 256  # Hermite coefficients per input of an expansion (the first stage's count)
LIMIT_VARIABLE = "TPCOMPILE_MEMORY_LIMIT"
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class KernelSize:
    """How many arrays one kernel evaluation holds: per pair of inputs, per input."""

    pair_quantities: int  # N1×N2 arrays in `cross`
    input_quantities: int  # length-N arrays in `diagonal`
    expansions: int  # Hermite expansions: N × HERMITE_TERMS each

    def bytes(self, n1: int, n2: int, positions: int, dim: int, itemsize: int) -> int:
        grids = n1 * n2 * (self.pair_quantities + TEMPORARIES)
        per_input = (n1 + n2) * (
            2 * positions * dim + self.input_quantities + self.expansions * HERMITE_TERMS
        )
        return itemsize * (grids + per_input)


def kernel_size(graph: Any) -> KernelSize:
    """The arrays of a kernel graph's evaluation (`kernels.graph.KernelGraph`)."""
    from tpcompile.kernels.plan import NumericSpec

    nodes = graph.nodes
    expansions = sum(
        isinstance(n.formula, NumericSpec) and n.formula.method == "coefficients" for n in nodes
    )
    pair = sum(not getattr(n, "diagonal_only", False) for n in nodes)
    return KernelSize(pair, len(nodes), expansions)


def check_memory(
    size: KernelSize, n1: int, n2: int, positions: int, dim: int, itemsize: int
) -> None:
    """Raise ResourceLimitError if the kernels of n1 × n2 inputs cannot fit in memory."""
    need = size.bytes(n1, n2, positions, dim, itemsize)
    limit = memory_limit()
    if limit is None or need <= limit[0]:
        return
    raise ResourceLimitError(
        f"the kernels of {n1} × {n2} inputs need about {format_bytes(need)} of memory "
        f"({size.pair_quantities} quantities per pair of inputs, {itemsize}-byte floats), more "
        f"than the {format_bytes(limit[0])} of {limit[1]}",
        hint="evaluate in blocks of rows, e.g. kernel_fn(x1[i:i + b], x2), or use fewer inputs; "
        f"{LIMIT_VARIABLE}=<bytes> sets the limit",
    )


def memory_limit() -> tuple[int, str] | None:
    """(bytes, where the number comes from), or None when nothing is known."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if text:
        return _parse_bytes(text), f"${LIMIT_VARIABLE}"
    known = [x for x in (_meminfo_available(), _cgroup_available()) if x is not None]
    if known:
        return min(known)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "physical memory"
    except (AttributeError, ValueError, OSError):
        return None


def _parse_bytes(text: str) -> int:
    number, unit = text.upper().removesuffix("B"), ""
    if number and number[-1] in UNITS:
        number, unit = number[:-1], number[-1]
    try:
        value = float(number) * UNITS[unit]
    except ValueError:
        raise ResourceLimitError(
            f"${LIMIT_VARIABLE} is `{text}`, not a size", hint="bytes, or e.g. 512M, 8G"
        ) from None
    if not value > 0:
        raise ResourceLimitError(f"${LIMIT_VARIABLE} must be positive, got `{text}`")
    return int(value)


def _meminfo_available() -> tuple[int, str] | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available memory (MemAvailable)"
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> tuple[int, str] | None:
    """A cgroup v2 limit (containers): memory.max - memory.current, when there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        return max(0, int(limit) - used), "memory left in this cgroup (memory.max)"
    except (OSError, ValueError):
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def size_report(prog: Program, analyse: bool) -> str:
    """What compiling `prog` will take: its instructions and input positions; with `analyse`, the
    kernel quantities (the sympy analysis, no JAX: it can take minutes for long recurrences)."""
    inp = prog.input
    positions = inp.positions
    text = f"size: {len(prog.instrs)} instructions"
    if inp.shape:
        read: dict[str, set[int]] = {}  # positions each input weight reads: x[p], x[q] meet
        for instr in prog.instrs:  # in a data gram <x_p, x_q> only through one weight
            if isinstance(instr, Embed):
                read.setdefault(instr.weight, set()).add(instr.position)
        pairs = sum(len(s) ** 2 for s in {frozenset(s) for s in read.values()})
        text += f"; input {inp.name}: {positions} positions, {pairs} position pairs read"
    if not analyse:
        return text + "; kernel quantities not counted (--size runs the kernel analysis)"
    from tpcompile.kernels import analyse as run_analysis
    from tpcompile.kernels.graph import DataGram
    from tpcompile.kernels.plan import NumericSpec

    start = time.perf_counter()
    graph = run_analysis(prog)[0]
    seconds = time.perf_counter() - start
    size = kernel_size(graph)
    grams = {(n.formula.p, n.formula.q) for n in graph.nodes if isinstance(n.formula, DataGram)}
    methods: dict[str, int] = {}
    for n in graph.nodes:
        if isinstance(n.formula, NumericSpec) and n.formula.method != "coefficients":
            methods[n.formula.method] = methods.get(n.formula.method, 0) + 1
    numerical = sum(methods.values())
    by_method = ", ".join(f"{k} {v}" for k, v in sorted(methods.items()))
    text += (
        f"\n  kernel quantities: {len(graph.nodes)} ({size.pair_quantities} per pair of inputs);"
        f" numerical: {numerical}{f' ({by_method})' if by_method else ''}"
    )
    if inp.shape:
        text += f"; data grams: {len(grams)}"
    per_1000 = format_bytes(size.bytes(1000, 1000, positions, 10, 8))
    return text + f"\n  analysis took {seconds:.1f} s; 1000 x 1000 inputs (d = 10) need ~{per_1000}"
