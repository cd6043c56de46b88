"""Benchmark: compile time of weight-shared recurrences versus their length T.

Where this sits: outside the package, on top of `tpcompile.compile`. A recurrence of length T has
O(T²) kernel quantities (every pair of steps meets), and the analysis (`tpcompile/kernels/`) is
meant to take time linear in their number; this script prints, for the Elman RNN of
`examples/rnn.tp` and the LSTM, two-layer LSTM and GRU of `benchmarks/programs/`, a Markdown
table of the kernel nodes, the lines of the generated module, the analysis alone
(`tpcompile.kernels.analyse`) and the whole `compile()` (analysis, emission of the module and
its `exec`; not the first `kernel_fn` call, which compiles with XLA). Times are wall-clock
(`time.perf_counter`) with the process's CPU time beside them, since a shared machine stretches
the one and not the other. Everything runs in this one process, after a warm-up compile; the
analysis alone is timed after `compile()`, so it finds sympy's caches warm.

    python benchmarks/compile_time.py            # RNN T = 10..100, LSTM T = 2..6, ...
    python benchmarks/compile_time.py --quick    # fewer and smaller sizes
    python benchmarks/compile_time.py --programs rnn --steps 50
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import tpcompile
from tpcompile.kernels import analyse

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = {
    "rnn": ROOT / "examples" / "rnn.tp",
    "lstm": ROOT / "benchmarks" / "programs" / "lstm.tp",
    "lstm2": ROOT / "benchmarks" / "programs" / "lstm2.tp",
    "gru": ROOT / "benchmarks" / "programs" / "gru.tp",
}
SIZES = {"rnn": (10, 20, 30, 50, 100), "lstm": (2, 4, 6), "lstm2": (2, 4), "gru": (2, 4, 8)}
QUICK = {"rnn": (10, 30), "lstm": (2, 4), "lstm2": (2,), "gru": (2, 4)}
T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """fn()'s value, wall-clock and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def row(name: str, steps: int) -> str:
    """One line of the table: program, T, nodes, lines, analysis and compile times."""
    text = PROGRAMS[name].read_text()
    params = {"T": steps}
    # compile() first: the analysis timed after it finds sympy's caches warm, not compile()
    compiled, wall, cpu = _timed(lambda: tpcompile.compile(text, params=params))
    program = tpcompile.load_program(text, params)
    _, analysis_wall, analysis_cpu = _timed(lambda: analyse(program))
    return (
        f"| {name} | {steps} | {len(compiled.graph.nodes)} | {compiled.source.count(chr(10))} "
        f"| {analysis_wall:.2f} ({analysis_cpu:.2f}) | {wall:.2f} ({cpu:.2f}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller sizes")
    parser.add_argument(
        "--programs", nargs="+", choices=sorted(PROGRAMS), default=list(PROGRAMS), metavar="NAME"
    )
    parser.add_argument("--steps", nargs="+", type=int, metavar="T", help="these lengths only")
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES
    tpcompile.compile("input x\nweight W ~ N(0, 1)\noutput tanh(W @ x)\n")  # imports, caches
    print("| program | T | kernel nodes | module lines | analysis s (CPU) | compile() s (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.programs:
        for steps in args.steps or sizes[name]:
            print(row(name, steps), flush=True)


if __name__ == "__main__":
    main()
