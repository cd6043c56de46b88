"""Benchmark: time to an rtol-1e-9 kernel of a depth-3 tanh MLP, tpcompile vs 2-D Gauss-Hermite.

Where this sits: outside the package, on top of `tpcompile.compile`. tanh has no closed form, so
every NNGP and NTK factor of the MLP is numerical. tpcompile's default (`method="auto"`) computes
Hermite coefficients once per input and layer and sums a Mehler series per pair of inputs
(`tpcompile/runtime/mehler.py`); `method="hermite"` is plain degree x degree Gauss-Hermite per
pair (as neural-tangents' `ElementwiseNumerical`), at the lowest degree that reaches the same
accuracy.

Accuracy is measured on the first `--subset` inputs against an independent reference: the same
kernel recursion in NumPy with a 2-D trapezoid rule (h = 0.05 on [-13, 13]^2, geometrically
convergent for tanh, THEORY §6.1; `trapezoid_pair` of tests/quadrature_reference.py, the tests'
rule). Error = max |K - K_ref| / (|K_ref| + max |K_ref|) over NNGP and NTK entries, the
convention of the tests. Times are for the full N x N NNGP + NTK (`kernel_fn(x)`), cold (first
call, including JIT compilation) and, for tpcompile, warm.

    python benchmarks/numerics.py              # N = 1000 (Gauss-Hermite takes minutes)
    python benchmarks/numerics.py --n 300      # quicker
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import tpcompile  # noqa: E402 - after enabling float64

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from quadrature_reference import trapezoid_pair  # noqa: E402 - the tests' reference rules

SW2, SB2, DEPTH, DIM = 1.5, 0.1, 3, 8
SOURCE = textwrap.dedent(f"""
    param L = {DEPTH}
    input x
    weight U ~ N(0, {SW2})
    weight W[2..L] ~ N(0, {SW2})
    bias b[1..L] ~ N(0, {SB2})
    h[1] = U @ x + b[1]
    for l in 2..L {{
        h[l] = W[l] @ tanh(h[l-1]) + b[l]
    }}
    output tanh(h[L])
""")


def inputs(n: int, seed: int = 0) -> np.ndarray:
    """Rows with |x|^2/d spread over [0.5, 2]: layer variances between ~0.8 and ~3."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(DIM)
    return x * np.sqrt(rng.uniform(0.5, 2.0, (n, 1)))


def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The MLP's NNGP and NTK: Sigma^l = sw2 E[phi phi'] + sb2, Theta^l = Sigma^l + sw2
    E[phi' phi'] Theta^{l-1}; NNGP = E[phi phi'], NTK = NNGP + E[phi' phi'] Theta^L."""

    def tanh_d(u: np.ndarray) -> np.ndarray:
        return 1 - np.tanh(u) ** 2

    def expect(f: Callable, sig: np.ndarray) -> np.ndarray:
        i, j = np.triu_indices(len(sig))
        d = np.diag(sig)
        out = np.zeros_like(sig)
        out[i, j] = trapezoid_pair(f, f, d[i], sig[i, j], d[j])
        out[j, i] = out[i, j]
        return out

    sig = SW2 * x @ x.T / x.shape[1] + SB2
    theta = sig
    for _ in range(2, DEPTH + 1):
        nxt = SW2 * expect(np.tanh, sig) + SB2
        theta = nxt + SW2 * expect(tanh_d, sig) * theta
        sig = nxt
    nngp = expect(np.tanh, sig)
    return nngp, nngp + expect(tanh_d, sig) * theta


def error(k: tuple[jax.Array, jax.Array], ref: tuple[np.ndarray, np.ndarray]) -> float:
    return max(
        float(np.max(np.abs(np.asarray(a) - b) / (np.abs(b) + np.max(np.abs(b)))))
        for a, b in zip(k, ref, strict=True)
    )


def timed(compiled: tpcompile.Compiled, x: np.ndarray) -> float:
    start = time.perf_counter()
    jax.block_until_ready(compiled.kernel_fn(x))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="inputs timed (default 1000)")
    parser.add_argument("--subset", type=int, default=40, help="inputs checked for accuracy")
    parser.add_argument("--target", type=float, default=1e-9, help="error to reach")
    parser.add_argument(
        "--degrees",
        default="64,96,128,160,200,256,320,400",
        help="Gauss-Hermite degrees to try, ascending",
    )
    args = parser.parse_args()
    x = inputs(args.n)
    sub = x[: args.subset]
    ref = reference(sub)

    auto = tpcompile.compile(SOURCE)
    k, report = auto.kernel_fn(sub, return_errors=True)
    auto_err = error(k, ref)
    terms = max(e.terms or 0 for e in report)
    auto_cold = timed(tpcompile.compile(SOURCE), x)
    auto_warm = timed(auto, x)

    degree, gh_err = None, float("nan")
    for d in (int(s) for s in args.degrees.split(",")):
        gh_err = error(tpcompile.compile(SOURCE, method="hermite", degree=d).kernel_fn(sub), ref)
        print(f"  Gauss-Hermite degree {d}: error {gh_err:.1e}", flush=True)
        if gh_err <= args.target:
            degree = d
            break
    if degree is None:
        raise SystemExit(f"no Gauss-Hermite degree in {args.degrees} reaches {args.target:g}")
    gh_cold = timed(tpcompile.compile(SOURCE, method="hermite", degree=degree), x)

    print(
        f"\ndepth-{DEPTH} tanh MLP (sw2={SW2}, sb2={SB2}), NNGP + NTK of {args.n} x {args.n} "
        f"inputs; error on {args.subset} inputs vs a trapezoid reference; target "
        f"{args.target:g}\n"
    )
    print(f"{'method':<34} {'error':>8} {'cold s':>9} {'warm s':>9} {'GH / this':>10}")
    print(
        f"{'tpcompile auto (Mehler, tol 1e-10)':<34} {auto_err:8.1e} {auto_cold:9.2f} "
        f"{auto_warm:9.2f} {gh_cold / auto_cold:7.0f}x/{gh_cold / auto_warm:.0f}x"
    )
    print(
        f"{f'2-D Gauss-Hermite, degree {degree}':<34} {gh_err:8.1e} {gh_cold:9.2f} "
        f"{'':>9} {1:9.0f}x"
    )
    print(
        f"\n(at most {terms} Mehler terms per pair; GH / this: cold / cold and cold / warm; "
        "the Gauss-Hermite time includes its compilation, a few seconds)"
    )


if __name__ == "__main__":
    main()
