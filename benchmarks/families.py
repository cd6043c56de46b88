"""Benchmark: convolutional programs computed over index families (DESIGN §6).

Where this sits: outside the package, on top of `tpcompile.compile` and `Compiled.kernel_fn`.
Rows: the conv1d case of ../shared/nt-oracle/perf_vs_nt.py (`programs/conv1d.tp`: 2 circular
3-tap relu layers, GAP, N = 100, P = 16, C = 3, standard normal inputs), in float64 and float32,
and `examples/cnn2d.tp` (3 zero-padded 3×3 relu layers, GAP) on 8×8 and 16×16 images. "compile"
is `tpcompile.compile` (elaboration, rolling, analysis), "first" the first `kernel_fn(x)` call
(NNGP and NTK; XLA compilation included), "warm" the minimum of 3 more calls, "total" import to
the end of the first call. Each row runs in a fresh process (JAX's persistent cache off).
neural-tangents figures are from ../shared/ANCHORS.md (same machine, same program and inputs,
measured on another day: ratios across days are ±40 %).

Measured 2026-12-02 (machine otherwise idle; NT from ANCHORS, another day):

    program      N size dtype     compile    first     warm    total  NT warm NT first NT/tpc warm
    conv1d     100   16 float64      0.49     2.11     0.15     3.47     0.58      2.2         3.8
    conv1d     100   16 float32      0.50     2.03     0.11     3.44     1.34      2.7        12.0
    cnn2d      100    8 float64      1.07     7.11     3.95     9.03
    cnn2d        4   16 float64      3.25     3.27     0.32     7.39

Measured again after the stages, batch-last arrays, vectorised atan2 and inlining (a noisy
period; page faults from freed block buffers make warm times vary ±30 % between processes):

    conv1d     100   16 float64      0.74     3.09     0.09     5.24
    conv1d     100   16 float32      0.76     3.06     0.05     4.96
    cnn2d      100    8 float64      1.58     7.87     2.94    10.60
    cnn2d        4   16 float64      4.50     4.98     0.14    10.54

Side by side with NT in one run (../shared/nt-oracle/perf_vs_nt.py --cases conv, same inputs):
NT today is faster than the ANCHORS figures, so the ratio is what counts. Before:

    case   dtype     NT warm  tpc warm  NT/tpc  NT first  tpc first  NT err   tpc err (vs NT f64)
    conv   float64   0.112    0.138     0.81    0.431     2.464      0        3.1e-10
    conv   float32   0.235    0.109     2.15    0.562     2.311      6.7e-06  1.7e-07

After (five runs, the first on a quiet machine): float64 NT/tpc 2.35, 1.61, 1.91, 1.85, 1.49
(tpc warm 0.046-0.084 s, NT 0.108-0.131 s); float32 4.5-6.7.

Before (ANCHORS, the unrolled path): conv1d 44.3 s warm, 108.6 s first; cnn2d did not compile
at 4×4. Predicted for the first family version: conv1d warm ~0.1-0.3 s (16×16 member pairs,
~100 quantities), measured 0.29 s with dense 16×16 map products, then 0.15 s after composing
maps into one gather per tap and materialising every quantity (XLA had fused each closed form
into all nine gathers reading it: 2.2× on cnn2d). cnn2d 8×8: 0.8 ms per pair of images, of
which the 68 two-sided gathers are most. The full sklearn digits set (N = 1797, 1.6 M pairs),
NNGP + NTK: predicted ~21 minutes at that rate, measured 1255 s (0.78 ms per pair), 1.1 GB peak.

    python benchmarks/families.py                    # the default table
    python benchmarks/families.py conv1d:64 cnn2d:8:100:float64   # name:N[:size[:dtype]]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
#: name -> (program, size parameters, input shape of one example without channels)
PROGRAMS = {
    "conv1d": (HERE / "programs" / "conv1d.tp", ("P",), 1),
    "cnn2d": (EXAMPLES / "cnn2d.tp", ("H", "W"), 2),
}
#: neural-tangents 0.6.5, ../shared/ANCHORS.md: (warm s, first s)
NT = {("conv1d", 100, 16, "float64"): (0.58, 2.2), ("conv1d", 100, 16, "float32"): (1.34, 2.7)}
DEFAULT = (
    "conv1d:100:16:float64",
    "conv1d:100:16:float32",
    "cnn2d:100:8:float64",
    "cnn2d:4:16:float64",
)


def measure(name: str, n: int, size: int, dtype: str) -> dict[str, float]:
    """One row, in this process (the child of `main`)."""
    start = time.perf_counter()
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", dtype == "float64")
    import tpcompile

    path, params, axes = PROGRAMS[name]
    imported = time.perf_counter()
    c = tpcompile.compile(path.read_text(), params={p: size for p in params})
    compiled = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(n, *(size,) * axes, 3)).astype(dtype)
    jax.block_until_ready(tuple(c.kernel_fn(x)))
    first = time.perf_counter()
    warm = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(tuple(c.kernel_fn(x)))
        warm.append(time.perf_counter() - t)
    return {
        "import": imported - start,
        "compile": compiled - imported,
        "first": first - compiled,
        "warm": min(warm),
        "total": first - start,
        "rolled": float(c.rolled),
    }


def main(rows: list[str]) -> None:
    heads = ("compile", "first", "warm", "total")
    print(
        f"{'program':<8} {'N':>5} {'size':>4} {'dtype':<8}"
        + "".join(f"{h:>9}" for h in heads)
        + f"{'NT warm':>9}{'NT first':>9}{'NT/tpc warm':>12}"
    )
    for row in rows:
        name, n, size, dtype = (row.split(":") + ["16", "float64"])[:4]
        env = dict(os.environ, TPCOMPILE_NO_CACHE="1")
        out = subprocess.run(
            [sys.executable, __file__, "--row", name, n, size, dtype],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        head = f"{name:<8} {n:>5} {size:>4} {dtype:<8}"
        if out.returncode != 0:
            print(f"{head} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        t = json.loads(out.stdout.strip().splitlines()[-1])
        nt = NT.get((name, int(n), int(size), dtype))
        tail = f"{nt[0]:9.2f}{nt[1]:9.1f}{nt[0] / t['warm']:12.1f}" if nt else ""
        print(head + "".join(f"{t[h]:9.2f}" for h in heads) + tail, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--row"]:
        name, n, size, dtype = sys.argv[2:6]
        print(json.dumps(measure(name, int(n), int(size), dtype)))
    else:
        main(sys.argv[1:] or list(DEFAULT))
