"""Benchmark: compile, first-call and warm-call times of recurrent programs with gates.

Where this sits: outside the package, on top of `tpcompile.compile` and `Compiled.kernel_fn`, on
the CLI's demo inputs (`tpcompile.inputs.demo_inputs`: 4 inputs, d = 3). The programs are
`benchmarks/programs/*.tp` (GRU, 1- and 2-layer LSTM) and the Elman RNN `examples/rnn.tp`.
"compile" is the analysis and code generation (`tpcompile.compile`); "first" the first `kernel_fn`
call (NNGP and NTK), dominated by XLA compilations of the numerical rules; "warm" a second call.
Each row is measured in a fresh process, so no compilation is shared between rows (JAX's
persistent cache is off).

Measurements (2-core machine, seconds; "before" with one compiled rule per group of quantities,
"after" with the rules split into pieces shared by every group, `runtime/laws.py`):

    program   T   compile  first before  first after  warm before  warm after  total after
    gru       4     1.6       112          24.6           6.4          5.5        26.8 *
    lstm      6    19.0       190          42.8          18           18.3        62.5
    lstm2     4     6.4         -          30.6            -          14.4        37.5
    rnn      50    89.9 *       -          47 *            -          22 *       139 *

    * measured while tests ran on the other core (inflated, perhaps 1.5-2x); the others alone.
    "before" from the previous notes (load 3-7). rnn's time is the analysis (`compile()`).

Profile of the GRU (T = 4) first call before: 114 Monte Carlo group compilations (85 s) and 38
tensor ones (19 s) of 112 s. Predicted after: ~65 integrands x 2 batch shapes x ~50 ms plus a few
shared pieces, ~10 s of XLA time; measured 14 s (124 integrand compilations 4.2 s, 24 `points`
compilations 5.1 s: its d-column tuple output compiles slowly). Warm calls are unchanged.

Session of 2026-12-02 (alone on the machine; predicted: emission and the first call of the RNN
down several-fold, the gated programs by ~30%, GRU T = 6 just under 60 s). Emission sorted each
sum with sympy's "lex" order (quadratic); `cross` indexed L[k][:, None] per use (125k eager
indexing ops at rnn T = 50) and ran `gram`'s lax.map uncompiled; integrands over batch 2's
variables compiled apart from batch 1's; every Monte Carlo step copied its draws to the device;
K(X, X) computed both triangles. Measured after:

    program   T   compile   first   warm   total   (before, same day: total)
    lstm      6     2.6      27.9   11.6    31.7     51 (CLI)
    gru       4     0.8      15.8    3.9    17.8     ~17
    gru       6     3.0      53.2   37.7    57.4     64.7
    lstm2     4     2.0      19.3    7.1    22.5     36 (CLI)
    rnn      50    15.4      11.7    5.9    28.4     70 (41.5 compile + 27.5 first)

GRU T = 6 is Monte Carlo compute (920 groups of 65536 samples; 35 of 39 s of a warm call);
its wall time varied 56-73 s between identical runs here (system time from page faults).

    python benchmarks/recurrent.py                         # the default table
    python benchmarks/recurrent.py lstm:2 gru:4 rnn:50     # program:T pairs
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent / "programs"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT = ("lstm:2", "lstm:6", "gru:4", "gru:6", "lstm2:4", "rnn:50")


def measure(name: str, steps: int) -> dict[str, float]:
    """One row, in this process (the child of `main`)."""
    start = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    import tpcompile
    from tpcompile.inputs import demo_inputs

    imported = time.perf_counter()
    source = (EXAMPLES / "rnn.tp" if name == "rnn" else PROGRAMS / f"{name}.tp").read_text()
    c = tpcompile.compile(source, params={"T": steps})
    compiled = time.perf_counter()
    x = demo_inputs(c.ir)
    jax.block_until_ready(tuple(c.kernel_fn(x)))
    first = time.perf_counter()
    jax.block_until_ready(tuple(c.kernel_fn(x)))
    warm = time.perf_counter()
    return {
        "import": imported - start,
        "compile": compiled - imported,
        "first": first - compiled,
        "warm": warm - first,
        "total": first - start,
    }


def main(rows: list[str]) -> None:
    heads = ("import", "compile", "first", "warm", "total")
    print(f"{'program':<10} {'T':>3} " + " ".join(f"{h:>8}" for h in heads))
    for row in rows:
        name, steps = row.split(":")
        env = dict(os.environ, TPCOMPILE_NO_CACHE="1")
        out = subprocess.run(
            [sys.executable, __file__, "--row", name, steps],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if out.returncode != 0:
            print(f"{name:<10} {steps:>3} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        t = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:<10} {steps:>3} " + " ".join(f"{t[h]:8.1f}" for h in heads),
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--row"]:
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]))))
    else:
        main(sys.argv[1:] or list(DEFAULT))
