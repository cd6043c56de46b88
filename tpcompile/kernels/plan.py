"""Numerical expectations at compile time: the options, the choice of method, and the report.

Where this sits in the pipeline: `api.compile(..., tol=, samples=, seed=, method=, degree=)` builds
`NumericOptions`; the analysis (`kernels/numeric.py`) calls `describe` and `pair_method` /
`multi_method` for every Gaussian expectation it cannot do exactly (DESIGN §3, preferences 3 and 4)
and records the choice in a `NumericSpec`; the emitter prints the matching `tpcompile.runtime` call;
after a kernel evaluation `build_report` turns the recorded (value, error) results into a
`NumericReport`.

The choice follows the smoothness of each side, read off the sympy expression:
- both sides of E[f(u) g(v)] smooth (polynomials included): a Mehler series over per-input Hermite
  coefficients (`runtime/mehler.py`), terms chosen from `tol` by an a-posteriori tail bound;
- a polynomial against a kinked function: the same series, exact after degree + 1 terms;
- otherwise, kinks at known points: the split 2-D Gauss-Legendre rule, degree from `tol`;
- functions of several Gaussians: tensor Gauss-Hermite when smooth in at most 4 dimensions,
  else Monte Carlo (`samples`, `seed`), which is also the fallback for kinks it cannot locate.
Kinks and smoothness come from the nonlinearity records (`tpcompile.prims`: the argument values
where relu, step, ... are not smooth), solved for the Gaussian variable exactly (sympy) or
numerically with the records' NumPy versions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from tpcompile.prims import by_function, records

METHODS = ("auto", "mehler", "split", "hermite", "mc")
TENSOR_CAP = {1: 128, 2: 64, 3: 32, 4: 16}  # tensor Gauss-Hermite degree per dimension count


def _numpy_primitives() -> dict[str, object]:
    """NumPy versions of the recorded functions by sympy name, to locate kinks numerically."""
    return {
        p.function.__name__: p.numpy
        for p in records()
        if p.function is not None and p.numpy is not None
    }


@dataclass(frozen=True)
class NumericOptions:
    """How numerical expectations are computed (the keyword options of `tpcompile.compile`).

    tol: target error of each numerical quantity relative to its scale sqrt(E f^2 E g^2) (the
        Mehler series and the 1-D rules meet it a posteriori; quadrature degrees follow it).
    samples, seed: Monte Carlo sample count (antithetic pairs: samples // 2) and PRNG seed.
    method: "auto", or force one rule for one-variable pairs: "mehler", "split", "hermite"
        (plain 2-D Gauss-Hermite, the reference of tests and benchmarks) or "mc".
    degree: override the degree of the split, Gauss-Hermite and tensor rules.
    """

    tol: float = 1e-10
    samples: int = 65536
    seed: int = 0
    method: str = "auto"
    degree: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.tol, float | int) and 0 < self.tol < 1):
            raise ValueError(f"tol must be a number in (0, 1), got {self.tol!r}")
        if not (isinstance(self.samples, int) and self.samples >= 4):
            raise ValueError(f"samples must be an int >= 4, got {self.samples!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.degree is not None and not (isinstance(self.degree, int) and self.degree >= 8):
            raise ValueError(f"degree must be None or an int >= 8, got {self.degree!r}")

    def split_degree(self) -> int:
        """Gauss-Legendre nodes per piece: geometric convergence, ~6.4 nodes per digit."""
        return self.degree or int(np.clip(math.ceil(6.4 * -math.log10(self.tol)), 16, 128))

    def hermite_degree(self) -> int:
        return self.degree or int(np.clip(math.ceil(10 * -math.log10(self.tol)), 16, 256))

    def tensor_degree(self, dim: int) -> int:
        wanted = max(8, math.ceil(3.2 * -math.log10(self.tol)))
        return self.degree or min(TENSOR_CAP[dim], wanted)


@dataclass(frozen=True)
class FunctionInfo:
    """The smoothness of a function of one Gaussian: "polynomial" (with its degree), "smooth",
    "kinked" (with the kinks' positions) or "irregular" (kinks it could not locate)."""

    kind: str
    kinks: tuple[float, ...] = ()
    degree: int = 0


@functools.lru_cache(maxsize=4096)
def describe(expr: sympy.Expr, var: sympy.Symbol) -> FunctionInfo:
    """Classify expr as a function of var (cached: one function meets many expectations)."""
    expr = sympy.sympify(expr)
    if expr.is_polynomial(var):
        return FunctionInfo("polynomial", degree=int(sympy.degree(expr, var)))
    kinks: set[float] = set()
    for node in sympy.preorder_traversal(expr):
        if not (
            isinstance(node, sympy.Function | sympy.Pow | sympy.Max | sympy.Min) and node.has(var)
        ):
            continue
        prim = by_function(type(node))
        if prim is not None and prim.kinks is not None:
            points = [_roots(node.args[0] - k, var) for k in prim.kinks]
        elif isinstance(node, sympy.Max | sympy.Min):
            args = node.args
            points = [_roots(a - b, var) for i, a in enumerate(args) for b in args[i + 1 :]]
        elif isinstance(node, sympy.Pow):  # smooth: a whole power, or any power of a positive base
            smooth = (node.exp.is_Integer and node.exp >= 0) or node.base.is_positive
            points = [()] if smooth else [None]
        else:
            points = [None]  # an unrecorded or irregular function: no rule can split it
        if any(p is None for p in points):
            return FunctionInfo("irregular")
        kinks.update(x for p in points for x in p)
    if not kinks:
        return FunctionInfo("smooth")
    return FunctionInfo("kinked", tuple(sorted(kinks)))


def _roots(expr: sympy.Expr, var: sympy.Symbol, limit: int = 8) -> tuple[float, ...] | None:
    """The real points where expr changes sign, or None (too many, or not found reliably)."""
    if not expr.has(var):
        return ()
    solved = sympy.solveset(expr, var, sympy.S.Reals)
    if isinstance(solved, sympy.FiniteSet) and all(s.is_real for s in solved):
        out = tuple(sorted(float(s) for s in solved))
        return out if len(out) <= limit else None
    if not isinstance(solved, sympy.ConditionSet):
        return None  # e.g. the infinitely many zeros of sin
    # Sign changes on a fine grid, refined by bisection. |u| <= 60 covers any argument a kernel
    # can meet (the Gaussian has variance of a few units; 60 is beyond 20 sd of variance 9).
    fn = sympy.lambdify(var, expr, modules=[_numpy_primitives(), "numpy"])
    grid = np.linspace(-60.0, 60.0, 240001)
    with np.errstate(all="ignore"):
        vals = np.broadcast_to(np.asarray(fn(grid), float), grid.shape)
    if not np.all(np.isfinite(vals)):
        return None
    sign = np.sign(vals)
    nonzero = np.nonzero(sign)[0]  # a zero exactly on the grid is bracketed by its neighbours
    change = np.nonzero(sign[nonzero[:-1]] != sign[nonzero[1:]])[0]
    if len(change) > limit:
        return None
    out = []
    for i in change:
        lo, hi, s_lo = grid[nonzero[i]], grid[nonzero[i + 1]], sign[nonzero[i]]
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.sign(fn(mid)) == s_lo else (lo, mid)
        out.append(float((lo + hi) / 2))
    return tuple(out)


def pair_method(left: FunctionInfo, right: FunctionInfo, options: NumericOptions) -> str:
    """The rule for E[f(u) g(v)] of two one-variable functions."""
    if options.method != "auto":
        return options.method
    smooth = ("polynomial", "smooth")
    if "irregular" in (left.kind, right.kind):
        return "mc"
    if left.kind in smooth and right.kind in smooth:
        return "mehler"
    if "polynomial" in (left.kind, right.kind):
        return "mehler"  # the polynomial side ends the series: exact after degree + 1 terms
    return "split"


def multi_method(smooth: bool, dim: int, options: NumericOptions) -> str:
    """The rule for an expectation over `dim` jointly Gaussian values (a mean or a pair)."""
    if options.method == "mc" or dim > 4 or not smooth:
        return "mc"
    return "tensor"


def is_smooth(expr: sympy.Expr) -> bool:
    """True if expr is built from smooth functions only (a function of any number of values)."""
    for node in sympy.preorder_traversal(sympy.sympify(expr)):
        if isinstance(node, sympy.Max | sympy.Min):
            return False
        if isinstance(node, sympy.Pow):
            if not ((node.exp.is_Integer and node.exp >= 0) or node.base.is_positive):
                return False
        elif isinstance(node, sympy.Function):
            prim = by_function(type(node))
            if prim is None or not prim.smooth:
                return False
    return True


# ---- the specification of one numerical quantity ------------------------------------------------


@dataclass(frozen=True)
class NumericSpec:
    """A Gaussian expectation with no closed form, evaluated numerically at run time.

    `left` is a function of the symbols `lvars`, `right` of `rvars`; `cov` is the joint
    covariance (rows/columns lvars then rvars) as reference expressions, `means` the constant
    means. `left` or `right` is None for a one-sided mean E[left].

    `method` (chosen by `numerics`): "mehler" (a series over the per-input Hermite coefficients
    referenced by `coefficients`, an L and an R reference), "coefficients" (those coefficients:
    a per-input quantity, `order` terms if fixed, `complete` when they are all the nonzero ones of a
    polynomial), "split" (2-D Gauss-Legendre cut at `kinks`,
    the u-values of left's and of right's kinks), "hermite" (plain 2-D Gauss-Hermite), "panel"
    (the 1-D rule of a one-variable mean), "tensor" (tensor Gauss-Hermite, at most 4 variables)
    or "mc" (Monte Carlo). `options` carries the tolerance, sample count and seed.
    """

    left: sympy.Expr | None
    right: sympy.Expr | None
    lvars: tuple[sympy.Symbol, ...]
    rvars: tuple[sympy.Symbol, ...]
    cov: tuple[tuple[sympy.Expr, ...], ...]
    means: tuple[sympy.Expr, ...]
    method: str = "split"
    kinks: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    coefficients: tuple[sympy.Expr, sympy.Expr] | None = None
    order: int | None = None
    complete: bool = False
    options: NumericOptions = NumericOptions()

    def expressions(self) -> list[sympy.Expr]:
        """Every formula in the spec that can reference other quantities."""
        return [e for row in self.cov for e in row] + list(self.coefficients or ())

    @property
    def description(self) -> str:
        """How the quantity is computed, in words (for `show` and the generated comments)."""
        opts, dim = self.options, len(self.lvars) + len(self.rvars)
        kinks = " and ".join(
            f"{side} = {', '.join(f'{k:.6g}' for k in ks)}"
            for side, ks in zip(("u", "v"), self.kinks, strict=True)
            if ks
        )
        cut = f" (cut at {kinks})" if kinks else ""
        method = self.method
        if method == "mehler":
            return (
                f"Mehler series Σ_k a_k b_k c^k over Hermite coefficients, terms from a tail "
                f"bound (tol {opts.tol:g})"
            )
        if method == "coefficients":
            count = (
                f"{self.order} terms"
                if self.order
                else f"terms until the tail is below tol {opts.tol:g}"
            )
            return f"Hermite coefficients per input, composite Gauss-Legendre{cut}, {count}"
        if method == "split":
            return f"2-D Gauss-Legendre split at the kinks{cut}, degree {opts.split_degree()}"
        if method == "hermite":
            return f"2-D Gauss-Hermite, degree {opts.hermite_degree()}"
        if method == "panel":
            return f"1-D composite Gauss-Legendre{cut}"
        if method == "tensor":
            return f"{dim}-D tensor Gauss-Hermite, degree {opts.tensor_degree(dim)}"
        return (
            f"Monte Carlo over {dim} Gaussians, {opts.samples} samples (antithetic, common "
            f"random numbers)"
        )


# ---- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericQuantity:
    """A kernel quantity evaluated numerically: its node, label, method and what its error is."""

    node: int
    label: str
    method: str
    description: str

    @property
    def error_kind(self) -> str:
        return "standard error" if self.method == "mc" else "bound"


@dataclass(frozen=True)
class QuantityError:
    """The largest reported error of one quantity over all entries it was evaluated at, and the
    per-entry values and errors of its last evaluation (the N1 x N2 grid for a pair quantity, the
    second batch's diagonal for a per-input one)."""

    quantity: NumericQuantity
    error: float
    scale: float
    terms: int | None = None
    values: np.ndarray | None = field(default=None, repr=False, compare=False)
    entries: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def relative(self) -> float:
        return self.error / self.scale if self.scale > 0 else self.error


@dataclass(frozen=True)
class NumericReport:
    """Errors of the numerical quantities of one kernel evaluation, by label (iterable).

    For deterministic rules the error is an estimated bound on |computed - exact|; for Monte Carlo
    it is one standard error. `scale` is max |value| over the entries."""

    entries: tuple[QuantityError, ...]

    def __iter__(self) -> Iterator[QuantityError]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, label: str) -> QuantityError:
        for e in self.entries:
            if e.quantity.label == label:
                return e
        raise KeyError(label)

    def max_relative(self, method: str | None = None) -> float:
        vals = [e.relative for e in self.entries if method in (None, e.quantity.method)]
        return max(vals, default=0.0)

    def __str__(self) -> str:
        rows = [f"{'quantity':<48} {'method':<8} {'error':>9} {'relative':>9}  kind"]
        for e in self.entries:
            terms = f" ({e.terms} terms)" if e.terms else ""
            rows.append(
                f"{e.quantity.label[:48]:<48} {e.quantity.method:<8} {e.error:9.2e} "
                f"{e.relative:9.2e}  {e.quantity.error_kind}{terms}"
            )
        return "\n".join(rows)


def build_report(
    quantities: Sequence[NumericQuantity], errors: Mapping[int, Sequence[Sequence[Any]]]
) -> NumericReport:
    """Aggregate the (value, error[, terms]) results recorded per node by `runtime.track`."""
    out = []
    for q in quantities:
        results = errors.get(q.node, ())
        if not results:
            continue
        err = max(float(np.max(np.abs(np.asarray(r[1])), initial=0.0)) for r in results)
        scale = max(float(np.max(np.abs(np.asarray(r[0])), initial=0.0)) for r in results)
        terms = [int(r[2]) for r in results if len(r) > 2]
        last = results[-1]
        values = np.asarray(last[0])
        out.append(
            QuantityError(
                q,
                err,
                scale,
                max(terms) if terms else None,
                values,
                np.broadcast_to(np.asarray(last[1]), values.shape),
            )
        )
    return NumericReport(tuple(out))


__all__ = [
    "FunctionInfo",
    "NumericOptions",
    "NumericQuantity",
    "NumericReport",
    "NumericSpec",
    "QuantityError",
    "build_report",
    "describe",
    "is_smooth",
    "multi_method",
    "pair_method",
]
