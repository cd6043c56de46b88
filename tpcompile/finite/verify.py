"""`tpcompile verify`: the infinite-width kernels against finite networks of growing width.

Where this sits: on top of both ends of the pipeline, `api.compile(...).kernel_fn` (the Master
Theorem's kernels) and `finite.FiniteNetwork` (the same IR at width n). For each width and seed
it measures the relative Frobenius error ‖K_n − K∞‖_F / ‖K∞‖_F of the empirical NNGP (the readout
feature Gram of one network) and NTK, then checks the rate (THEORY §7.3, DESIGN §4): the error of
a correct kernel falls like c/sqrt(n), while a wrong one (a missing σ², a dropped term, a broken
independence assumption) leaves a plateau that flattens the log-log slope. Two checks, per kernel:

1. the least-squares slope of log(mean error) against log(width) is at most -0.3: the error falls
   at least about as fast as c/sqrt(n). Steeper is fine: where the finite-width bias (order 1/n)
   dominates the fluctuation (order 1/sqrt(n)), as in polynomial networks with heavy tails, the
   error of a correct kernel falls like 1/n at the smaller widths;
2. the mean error at the widest width is below the fitted line's value there times
   exp(3·cv/sqrt(S)), where cv is the seed-to-seed relative spread pooled over widths and S the
   number of seeds: cv/sqrt(S) is the standard error of log(mean error), so a point on the trend
   exceeds the bound with probability ~0.1% (one-sided 3σ); an upturn at the end (a plateau
   setting in) exceeds it.

Exit code 0 when both kernels pass, 4 ("verification failed") otherwise.

How often the verdict fails, simulated (2000 runs each; widths 256..4096; per-seed errors a
gamma-distributed factor with cv 0.45, as measured on the examples, times the mean error):

    mean error                       S = 4    S = 8    S = 12
    2/sqrt(n) (correct)              2.4%     0.5%     0.0%
    sqrt(4/n + 2000²/n²) (correct)   0.0%     0.0%     0.0%
    sqrt(4/n + 0.03²) (plateau)      18%      9%       6%
    sqrt(4/n + 0.05²) (plateau)      53%      50%      50%

The previous two-sided window [-0.7, -0.3] failed the bias-dominated correct kernel in 100% of
runs (its slope is ≈ -0.9) and was otherwise the same. A plateau of the size of the fluctuation at
the widest width (here 2/sqrt(4096) = 0.031) is caught only part of the time, by any rule; the
mutation tests in tests/test_verify.py (a dropped NTK term, a 10% scaled NTK) fail every time.
Hence the default of 8 seeds; the report prints each slope's standard error and warns when it
exceeds 0.1.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from tpcompile.errors import TPError

SLOPE_MAX = -0.3  # a correct kernel's error falls like n^-0.5 (fluctuation) or faster (bias)
DEFAULT_WIDTHS = (256, 512, 1024, 2048, 4096)
DEFAULT_SEEDS = 8
Z_BOUND = 3.0  # standard errors of log(mean error) allowed above the fitted line
EXIT_FAILED = 4
# Above this standard error the slope of a correct c/sqrt(n) error exceeds -0.3 more than ~2% of
# the time (two standard errors).
SLOPE_SE_WARN = 0.1
KERNELS = ("nngp", "ntk")


@dataclass(frozen=True)
class Fit:
    """The rate fit of one kernel's errors (shape (widths, seeds))."""

    kernel: str
    widths: np.ndarray
    errors: np.ndarray
    slope: float
    intercept: float
    cv: float  # pooled seed-to-seed relative spread std/mean

    @property
    def mean(self) -> np.ndarray:
        return self.errors.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        return self.errors.std(axis=1, ddof=1)

    def predict(self, width: float) -> float:
        return math.exp(self.intercept + self.slope * math.log(width))

    @property
    def bound(self) -> float:
        seeds = self.errors.shape[1]
        return self.predict(self.widths[-1]) * math.exp(Z_BOUND * self.cv / math.sqrt(seeds))

    @property
    def slope_se(self) -> float:
        """Standard error of the slope: the log-mean's noise cv/sqrt(S) over the spread of log n."""
        spread = np.sum((np.log(self.widths) - np.log(self.widths).mean()) ** 2)
        return self.cv / math.sqrt(self.errors.shape[1]) / math.sqrt(spread)

    @property
    def slope_ok(self) -> bool:
        return self.slope <= SLOPE_MAX

    @property
    def bound_ok(self) -> bool:
        return bool(self.mean[-1] <= self.bound)

    @property
    def ok(self) -> bool:
        return self.slope_ok and self.bound_ok


def fit_rate(kernel: str, widths: Sequence[int], errors: np.ndarray) -> Fit:
    """Least-squares line through (log width, log mean error), and the pooled relative spread."""
    w = np.asarray(widths, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    mean = errors.mean(axis=1)
    slope, intercept = np.polyfit(np.log(w), np.log(mean), 1)
    # Pooled over widths: the relative spread barely depends on n (the error is c/sqrt(n) times a
    # width-independent random factor), and pooling gives W·(S-1) degrees of freedom, not S-1.
    cv = float(np.sqrt(np.mean((errors.std(axis=1, ddof=1) / mean) ** 2)))
    return Fit(kernel, w, errors, float(slope), float(intercept), cv)


# ---- the sweep ---------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, one tick per (width, seed). No dependencies."""

    def __init__(self, total: int, stream: TextIO | None = None, bar: int = 30) -> None:
        self.total, self.done, self.bar = total, 0, bar
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()

    def tick(self, label: str) -> None:
        self.done += 1
        filled = self.bar * self.done // self.total
        elapsed = time.monotonic() - self.start
        self.stream.write(
            f"\rverify [{'#' * filled}{'.' * (self.bar - filled)}] "
            f"{self.done}/{self.total} {label:<22} {elapsed:5.1f}s"
        )
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def relative_error(k: Any, k_inf: np.ndarray) -> float:
    """‖k − k_inf‖_F / ‖k_inf‖_F, in float64."""
    k = np.asarray(k, dtype=np.float64)
    return float(np.linalg.norm(k - k_inf) / np.linalg.norm(k_inf))


def sweep(
    compiled: Any,
    x1: np.ndarray,
    x2: np.ndarray | None,
    widths: Sequence[int],
    seeds: int,
    float32: bool = False,
    progress: Progress | None = None,
) -> dict[str, Fit]:
    """Errors of the empirical kernels at every width and seed, and their rate fits."""
    import jax
    import jax.numpy as jnp

    from tpcompile.finite.network import FiniteNetwork, sample_kernels

    k = compiled.kernel_fn(x1, x2, get=KERNELS)  # also validates the arrays' shapes
    k_inf = {name: np.asarray(getattr(k, name), np.float64) for name in KERNELS}
    for name, value in k_inf.items():
        if not np.linalg.norm(value) > 0:
            raise TPError(
                f"the infinite-width {name.upper()} is zero on these inputs, so a "
                "relative error is undefined",
                hint="use other inputs (--x)",
            )
    dtype = jnp.float32 if float32 else jnp.float64
    errors = {name: np.zeros((len(widths), seeds)) for name in KERNELS}
    for i, width in enumerate(widths):
        net = FiniteNetwork(compiled.ir, width, x1.shape[-1])
        for seed in range(seeds):
            key = jax.random.fold_in(jax.random.PRNGKey(seed), width)
            kernels = sample_kernels(net, key, x1, x2, dtype)
            for name, value in zip(KERNELS, kernels, strict=True):
                errors[name][i, seed] = relative_error(value, k_inf[name])
            if progress is not None:
                progress.tick(f"width {width} seed {seed + 1}/{seeds}")
    return {name: fit_rate(name, widths, errors[name]) for name in KERNELS}


# ---- reporting ---------------------------------------------------------------------------------


def report(fits: dict[str, Fit]) -> tuple[str, bool]:
    """The table, the slopes, the bounds and the verdict; and whether verification passed."""
    nngp, ntk = fits["nngp"], fits["ntk"]
    seeds = nngp.errors.shape[1]
    lines = [f"{'width':>7}   {'NNGP rel. error':<21}   {'NTK rel. error':<21}"]
    for i, w in enumerate(nngp.widths):
        cells = [f"{f.mean[i]:.4f} ± {f.std[i]:.4f}" for f in (nngp, ntk)]
        lines.append(f"{int(w):>7}   {cells[0]:<21}   {cells[1]:<21}")
    lines.append(
        f"fitted slope of log(mean error) vs log(width): NNGP {nngp.slope:+.3f} ± "
        f"{nngp.slope_se:.3f}, NTK {ntk.slope:+.3f} ± {ntk.slope_se:.3f}   (theory -0.5, down "
        f"to -1 where the 1/n bias dominates; accepted ≤ {SLOPE_MAX})"
    )
    if max(nngp.slope_se, ntk.slope_se) > SLOPE_SE_WARN:
        lines.append(
            "  note: the slopes are poorly determined (standard error > "
            f"{SLOPE_SE_WARN}); use more --seeds or a wider range of --widths"
        )
    widest = int(nngp.widths[-1])
    lines.append(
        f"bound at width {widest}: fit({widest}) × exp({Z_BOUND:g}·cv/√{seeds}), cv = seed-to-seed "
        "relative spread pooled over widths (a 3-standard-error margin on the log mean)"
    )
    problems = []
    for f in (nngp, ntk):
        name = f.kernel.upper()
        mark = "ok" if f.bound_ok else "TOO LARGE"
        lines.append(
            f"  {name:<4} error {f.mean[-1]:.4f} vs bound {f.bound:.4f} "
            f"(fit {f.predict(widest):.4f}, cv {f.cv:.2f}): {mark}"
        )
        if not f.slope_ok:
            problems.append(f"{name} slope {f.slope:+.3f} above {SLOPE_MAX}: the error plateaus")
        if not f.bound_ok:
            problems.append(
                f"{name} error {f.mean[-1]:.4f} at width {widest} above its bound {f.bound:.4f}"
            )
    if problems:
        lines.append("verdict: FAILED — " + "; ".join(problems))
    else:
        lines.append(
            "verdict: ok — the empirical NNGP and NTK converge to the compiled kernels "
            "at the c/√n rate"
        )
    return "\n".join(lines) + "\n", not problems


def require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise TPError(
            "--plot needs matplotlib, which is not installed", hint="pip install tpcompile[plot]"
        ) from None
    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    return plt


def plot(fits: dict[str, Fit], path: str, title: str) -> None:
    """Log-log plot of error vs width (mean ± std over seeds), the fits and a c/√n reference."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for f, color in zip(fits.values(), ("tab:blue", "tab:orange"), strict=True):
        ax.errorbar(
            f.widths,
            f.mean,
            yerr=f.std,
            fmt="o",
            color=color,
            capsize=3,
            label=f"{f.kernel.upper()} (slope {f.slope:+.2f})",
        )
        ax.plot(f.widths, [f.predict(w) for w in f.widths], "-", color=color, alpha=0.5)
    # The reference line through the first NTK mean: c/sqrt(n).
    first = fits["ntk"]
    c = first.mean[0] * math.sqrt(first.widths[0])
    ax.plot(first.widths, c / np.sqrt(first.widths), "k--", label="c/√n")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width n")
    ax.set_ylabel("‖K_n − K∞‖_F / ‖K∞‖_F")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise TPError(f"cannot write the plot to {path}: {exc}") from None
    finally:
        plt.close(fig)


def parse_widths(text: str) -> list[int]:
    try:
        widths = sorted({int(w) for w in text.split(",") if w.strip()})
    except ValueError:
        raise TPError(
            f"--widths expects comma-separated integers, got `{text}`",
            hint="e.g. --widths 256,512,1024",
        ) from None
    if len(widths) < 2 or widths[0] < 1:
        raise TPError(
            f"--widths needs at least two distinct positive widths, got `{text}`",
            hint="the rate is a slope over widths, e.g. --widths 256,1024,4096",
        )
    return widths
