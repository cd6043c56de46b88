"""Snapshot compiled kernels, to compare two builds of tpcompile bitwise.

Usage:
    python tools/kernel_snapshot.py OUT.npz          # kernels of the build on PYTHONPATH
    python tools/kernel_snapshot.py --compare A.npz B.npz

Environment: SNAPSHOT_NO_CSE=1 prints the generated module without named subexpressions (a
build that has `tpcompile.codegen.cse`); XLA_FLAGS=--xla_cpu_max_isa=SSE4_2 keeps XLA from
contracting a*b + c into fused multiply-adds, whose placement depends on how XLA fuses the code.

A refactor that promises "no change of behaviour" runs this against the build before and after
the change (e.g. `git worktree add /tmp/old <commit>` and `PYTHONPATH=/tmp/old`) and compares.
It uses only the public API: `tpcompile kernel` on every example (float64, demo inputs and a
cross batch) and `tpcompile.compile(...).kernel_fn` on random programs from a fixed seed, in
float64 and float32.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_MAIN = (
    "import os, sys\n"
    "if os.environ.get('SNAPSHOT_NO_CSE') == '1':\n"
    "    from tpcompile.codegen import cse; cse.ENABLE_CSE = False\n"
    "from tpcompile.cli import main; sys.exit(main(sys.argv[1:]))"
)
sys.path.insert(0, str(ROOT / "tests"))
from program_strategies import ONE_ARG as _TESTED  # noqa: E402 - the tests' own templates

# plus the functions the tests' strategy leaves out (numerics, derivative-0 step)
ONE_ARG = (*_TESTED, "tanh({})", "sigmoid({})", "relu_pow({}, 2)", "step({})")


def random_program(rng: random.Random) -> str:
    """A random valid program (the shape of tests/program_strategies.py, plus numerics)."""
    n_data, n_hidden = rng.randint(1, 3), rng.randint(1, 3)
    body, pool, used = [], [], set()
    for i in range(1, n_data + 1):
        body.append(f"g{i} = A{i} @ x")
        pool.append(f"g{i}")
    has_bias = rng.random() < 0.5
    for step in range(1, rng.randint(1, 4) + 1):
        last, other = pool[-1], rng.choice(pool)
        kind = rng.choice(("matmul", "matmul", "gate", "lincomb"))
        if kind == "lincomb":
            rhs = f"0.8 * {last} - 0.6 * {other}" if last != other else f"0.5 * {last}"
        else:
            j = rng.randint(1, n_hidden)
            used.add(j)
            arg = f"{last} * erf({other})" if kind == "gate" else rng.choice(ONE_ARG).format(last)
            rhs = f"W{j} @ ({arg})"
        if has_bias and rng.random() < 0.5:
            rhs += " + b"
        body.append(f"h{step} = {rhs}")
        pool.append(f"h{step}")
    out = rng.choice(ONE_ARG).format(pool[-1])
    decls = ["input x"] + [
        f"weight A{i} ~ N(0, {rng.choice(('0.5', '1.5'))})" for i in range(1, n_data + 1)
    ]
    decls += [f"weight W{j} ~ N(0, {rng.choice(('1.0', '2.0'))})" for j in sorted(used)]
    if has_bias:
        decls.append("bias b ~ N(0.3, 0.1)")
    return "\n".join([*decls, *body, f"output {out}"]) + "\n"


def snapshot(out: str, count: int = 24) -> None:
    import jax

    import tpcompile

    if os.environ.get("SNAPSHOT_NO_CSE") == "1":  # builds that name shared subexpressions
        from tpcompile.codegen import cse

        cse.ENABLE_CSE = False
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for example in sorted((ROOT / "examples").glob("*.tp")):
            for cross in (False, True):
                path = Path(tmp) / f"{example.stem}.npz"
                cmd = [sys.executable, "-c", _MAIN, "kernel", str(example), "-o", str(path)]
                if cross:
                    x = np.random.default_rng(1).normal(size=(5, *_positions(example), 3))
                    np.save(Path(tmp) / "x2.npy", x)
                    cmd += ["--x2", str(Path(tmp) / "x2.npy")]
                subprocess.run(cmd, check=True, capture_output=True)
                with np.load(path) as data:
                    for key in data.files:
                        arrays[f"{example.stem}/{'cross' if cross else 'self'}/{key}"] = data[key]
    rng = random.Random(0)
    x = np.random.default_rng(0).normal(size=(7, 3))
    x[5] = x[1]
    for x64 in (True, False):
        jax.config.update("jax_enable_x64", x64)
        for i in range(count):
            source = random_program(rng)
            name = f"random{i}/{'f64' if x64 else 'f32'}"
            try:
                k = tpcompile.compile(source).kernel_fn(x, x[:4] if i % 2 else None)
            except Exception as exc:  # a known bug must stay the same bug in both builds
                arrays[f"{name}/error"] = np.frombuffer(type(exc).__name__.encode(), np.uint8)
                continue
            for key in ("nngp", "ntk"):
                arrays[f"{name}/{key}"] = np.asarray(getattr(k, key))
    np.savez(out, **arrays)
    print(f"wrote {len(arrays)} arrays to {out}")


def _positions(example: Path) -> tuple[int, ...]:
    import tpcompile

    return tpcompile.load_program(example.read_text()).input.shape


def compare(a: str, b: str) -> int:
    with np.load(a) as left, np.load(b) as right:
        keys = sorted(set(left.files) | set(right.files))
        bad = [
            k
            for k in keys
            if k not in left.files
            or k not in right.files
            or left[k].dtype != right[k].dtype
            or left[k].shape != right[k].shape
            or left[k].tobytes() != right[k].tobytes()
        ]
    for k in bad:
        print(f"DIFFERENT: {k}")
    print(f"{len(keys) - len(bad)} of {len(keys)} arrays bitwise identical")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    snapshot(sys.argv[1])
