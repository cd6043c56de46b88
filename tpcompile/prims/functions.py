"""Sympy primitives for the language's nonlinearities (the functions sympy lacks).

Where this sits in the pipeline: the records of `prims/table.py` name these classes; the
elaborator turns builtin calls into sympy expressions built from them; the kernel analysis
differentiates them (NTK backward pass) and takes Gaussian expectations of them
(`kernels/closed_forms/`); the code generator prints them by their records' JAX templates, so a
formula is written once (in sympy) and never again by hand in JAX.

Conventions that the rest of the project relies on:
- Derivatives follow autodiff, not distribution theory: Relu' = Step and Step' = 0 (never a Dirac
  delta). The printed JAX code has the same gradients (`jax.nn.relu` has gradient 0 at 0, `Step`
  prints as a `jnp.where` with gradient 0), so the finite network and the kernels agree.
- `SafeSqrt` and `SafeDiv` are numerical guards for closed forms: on the valid domain they equal
  `sqrt` and `/`, and they stay finite on the boundary (zero variances, correlation ±1) where
  rounding would otherwise produce NaN.
- Printed code uses only the prefixes `jnp.` and `jax.`; the generated module imports `jax`,
  `jax.numpy as jnp`, `jax.scipy.special`, `jax.scipy.stats` and `jax.nn`.
"""

from __future__ import annotations

from typing import Any

import sympy
from sympy.core.function import ArgumentIndexError

__all__ = [
    "Gelu",
    "GeluPrime",
    "Relu",
    "ReluPow",
    "SafeDiv",
    "SafeSqrt",
    "Sigmoid",
    "Softplus",
    "Step",
]


def _real_number(x: sympy.Expr) -> bool:
    """True for an exact or floating real constant whose sign sympy can decide."""
    return bool(x.is_number and x.is_extended_real and x.is_comparable)


def _std_normal_cdf(x: sympy.Expr) -> sympy.Expr:
    return (1 + sympy.erf(x / sympy.sqrt(2))) / 2


def _std_normal_pdf(x: sympy.Expr) -> sympy.Expr:
    return sympy.exp(-(x**2) / 2) / sympy.sqrt(2 * sympy.pi)


class _Primitive(sympy.Function):
    """A real function of one argument: subclasses define `derivative(x)`, and `_evalf_via` (a
    sympy function to rewrite to) when they evaluate numerically through another form."""

    nargs = 1
    _evalf_via: Any = None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        raise NotImplementedError

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return self.derivative(self.args[0])

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        if self._evalf_via is None:
            return None
        return self.rewrite(self._evalf_via)._eval_evalf(prec)

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real


class _Formula(_Primitive):
    """A primitive with an exact formula in sympy builtins (`formula`, in terms of
    `_evalf_via`): exact numbers, 0 included, evaluate through it; floats stay unevaluated until
    `evalf`, which rewrites to the formula; `rewrite(_evalf_via)` gives the formula too."""

    @staticmethod
    def formula(x: sympy.Expr) -> sympy.Expr:
        raise NotImplementedError

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero or (_real_number(x) and not x.is_Float):
            return cls.formula(x)
        return None

    def _eval_rewrite(self, rule: Any, args: Any, **hints: Any) -> sympy.Expr | None:
        return self.formula(*args) if rule is self._evalf_via else None


class Relu(_Primitive):
    """relu(x) = max(x, 0). Derivative: Step (the autodiff convention, 0 at the kink)."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if _real_number(x):
            return x if x.is_positive else sympy.S.Zero
        return None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        return Step(x)

    def _eval_is_extended_nonnegative(self) -> bool | None:
        return True if self.args[0].is_extended_real else None


class Step(_Primitive):
    """step(x) = 1 for x > 0, else 0 (so Step(0) = 0). Derivative: 0, never a Dirac delta."""

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if _real_number(x):
            return sympy.S.One if x.is_positive else sympy.S.Zero
        return None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        # The autodiff convention (THEORY §10 trap 6): a delta here would make every NTK with a
        # step/sign nonlinearity infinite, while the finite network's gradient is exactly 0.
        return sympy.S.Zero

    def _eval_is_extended_nonnegative(self) -> bool | None:
        return True if self.args[0].is_extended_real else None


class ReluPow(sympy.Function):
    """relu(x)**k for a positive integer k. `ReluPow(x, 1)` evaluates to `Relu(x)`.

    A separate primitive (rather than `Relu(x)**k`) so the closed-form table can recognise the
    arc-cosine kernel of order k and the derivative stays in the family: k*ReluPow(x, k-1).
    """

    nargs = 2

    @classmethod
    def eval(cls, x: sympy.Expr, k: sympy.Expr) -> sympy.Expr | None:
        if not (k.is_Integer and k.is_positive):
            raise ValueError(f"ReluPow exponent must be a positive integer, got {k}")
        if k == 1:
            return Relu(x)
        if _real_number(x):
            return x**k if x.is_positive else sympy.S.Zero
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        if argindex != 1:
            # The exponent is a compile-time integer, not a differentiable argument.
            raise ArgumentIndexError(self, argindex)
        x, k = self.args
        return k * ReluPow(x, k - 1)

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real

    def _eval_is_extended_nonnegative(self) -> bool | None:
        return True if self.args[0].is_extended_real else None


class Gelu(_Formula):
    """Exact GELU: x * Phi(x), Phi the standard normal CDF. Derivative: GeluPrime."""

    _evalf_via = sympy.erf

    @staticmethod
    def formula(x: sympy.Expr) -> sympy.Expr:
        return x * _std_normal_cdf(x)

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        return GeluPrime(x)


class GeluPrime(_Formula):
    """Derivative of exact GELU: Phi(x) + x*phi(x). Derivative: (2 - x**2)*phi(x)."""

    _evalf_via = sympy.erf

    @staticmethod
    def formula(x: sympy.Expr) -> sympy.Expr:
        return _std_normal_cdf(x) + x * _std_normal_pdf(x)

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        # Written with sympy builtins (not a new primitive) so the closed-form table sees a
        # polynomial times a Gaussian, which it integrates exactly.
        return (2 - x**2) * sympy.exp(-(x**2) / 2) / sympy.sqrt(2 * sympy.pi)


class Sigmoid(_Formula):
    """Logistic sigmoid 1/(1 + exp(-x)). Derivative: Sigmoid*(1 - Sigmoid)."""

    _evalf_via = sympy.exp

    @staticmethod
    def formula(x: sympy.Expr) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-x))

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        s = Sigmoid(x)
        return s * (1 - s)

    def _eval_is_extended_positive(self) -> bool | None:
        return True if self.args[0].is_extended_real else None


class Softplus(_Formula):
    """softplus(x) = log(1 + exp(x)). Derivative: Sigmoid."""

    _evalf_via = sympy.log

    @staticmethod
    def formula(x: sympy.Expr) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(x))

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        return Sigmoid(x)

    def _eval_is_extended_positive(self) -> bool | None:
        return True if self.args[0].is_extended_real else None


class SafeSqrt(_Primitive):
    """sqrt(max(x, 0)): a guard for closed forms whose argument is >= 0 up to rounding.

    Its derivative 1/(2*SafeSqrt(x)) is the derivative of sqrt on x > 0, the only region where the
    guard is inactive and where closed forms are differentiated.
    """

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if _real_number(x):
            return sympy.sqrt(x) if x.is_positive else sympy.S.Zero
        return None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        return 1 / (2 * SafeSqrt(x))

    def _eval_is_extended_nonnegative(self) -> bool | None:
        return True if self.args[0].is_extended_real else None


class SafeDiv(sympy.Function):
    """x / y where y != 0, and 0 where y == 0: a guard for ratios that are bounded but 0/0 at a
    degenerate covariance (e.g. S12/sqrt(S22) when S22 = 0), which closed forms of kinked
    functions of different orders need. Printed with the double-`where` trick so gradients at
    y != 0 are exact and gradients at y == 0 are 0 rather than NaN."""

    nargs = 2

    @classmethod
    def eval(cls, x: sympy.Expr, y: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero or y.is_zero:
            return sympy.S.Zero
        if y.is_number and y.is_nonzero:
            # A nonzero constant denominator needs no guard.
            return x / y
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, y = self.args
        if argindex == 1:
            return SafeDiv(sympy.S.One, y)
        if argindex == 2:
            return -SafeDiv(x, y**2)
        raise ArgumentIndexError(self, argindex)

    def _eval_is_extended_real(self) -> bool | None:
        x, y = self.args
        return True if (x.is_extended_real and y.is_extended_real) else None
