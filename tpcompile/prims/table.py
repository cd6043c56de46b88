"""The nonlinearity records: one `Prim` each, registered on import of `tpcompile.prims`.

Builtins prefer exact linear decompositions (abs = 2*relu(x) - x, sign = 2*step(x) - 1, leaky
relu = a*x + (1-a)*relu(x)), so the kernel analysis meets few atoms, each with a closed form.
Internal records describe functions that only derivatives and closed forms produce.
JAX templates use only the prefixes `jnp.`, `jax.` and `rt.` (the generated module's imports:
jax, jax.numpy as jnp, and tpcompile.runtime as rt).
"""

from __future__ import annotations

import math

import numpy as np
import sympy

from tpcompile.prims.functions import (
    Gelu,
    GeluPrime,
    Relu,
    ReluPow,
    SafeDiv,
    SafeSqrt,
    Sigmoid,
    Softplus,
    Step,
)
from tpcompile.prims.record import Prim, register

_erf = np.vectorize(math.erf, otypes=[float])  # float64 whatever JAX's precision setting


def _as_positive_int(k: sympy.Expr) -> int | None:
    """k as a Python int if it is a positive integer (2 and 2.0 both count), else None."""
    k = sympy.sympify(k)
    if not (k.is_number and k.is_extended_real):
        return None
    rounded = round(float(k))
    # Compare as differences: sympy's Float(2.0) == Integer(2) is False.
    if rounded < 1 or not (k - rounded).is_zero:
        return None
    return rounded


def _check_relu_pow(k: sympy.Expr) -> str | None:
    if _as_positive_int(k) is None:
        return f"the exponent of relu_pow must be a positive integer, got {k}"
    return None


def _check_real(a: sympy.Expr) -> str | None:
    a = sympy.sympify(a)
    if not (a.is_number and a.is_extended_real and a.is_finite):
        return f"the argument `a` must be a finite real number, got {a}"
    return None


def _build_relu_pow(x: sympy.Expr, k: sympy.Expr) -> sympy.Expr:
    n = _as_positive_int(k)
    if n is None:
        # `check` runs first in the elaborator; reaching this is a bug in the caller.
        raise ValueError(f"relu_pow exponent must be a positive integer, got {k}")
    return ReluPow(x, sympy.Integer(n))


def _build_leaky_relu(x: sympy.Expr, a: sympy.Expr) -> sympy.Expr:
    a = sympy.sympify(a)
    # max(x, a*x) for 0 <= a <= 1; as a linear decomposition it is exact for every a (it is the
    # piecewise-linear function with slope 1 for x > 0 and slope a for x < 0).
    return a * x + (1 - a) * Relu(x)


def _gelu_prime(x: np.ndarray) -> np.ndarray:
    return (1 + _erf(x / np.sqrt(2))) / 2 + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


CDF = "jax.scipy.stats.norm.cdf"

# ---- the language's builtins, in the docs' order ------------------------------------------------
for _prim in (
    Prim(
        "relu",
        "relu(e) = max(e, 0)",
        Relu,
        jax="jax.nn.relu({0})",
        numpy=lambda x: np.maximum(x, 0),
        kinks=(0.0,),
    ),
    Prim(
        "step",
        "step(e) = 1 if e > 0 else 0 (derivative 0)",
        Step,
        # `where` has gradient 0 in its condition: the autodiff convention Step' = 0.
        jax="jnp.where({0} > 0, 1.0, 0.0)",
        numpy=lambda x: np.where(x > 0, 1.0, 0.0),
        kinks=(0.0,),
    ),
    Prim(
        "sign",
        "sign(e) = 2*step(e) - 1 (+1 for e > 0, -1 otherwise; derivative 0)",
        build=lambda x: 2 * Step(x) - 1,
    ),
    Prim("abs", "abs(e) = |e| = 2*relu(e) - e", build=lambda x: 2 * Relu(x) - x),
    Prim(
        "leaky_relu",
        "leaky_relu(e, a) = max(e, a*e): slope 1 for e > 0, slope a for e < 0",
        build=_build_leaky_relu,
        numbers=("a",),
        check=_check_real,
        examples=((0.1,), (-0.5,)),
    ),
    Prim(
        "relu_pow",
        "relu_pow(e, k) = relu(e)**k, k a positive integer",
        ReluPow,
        build=_build_relu_pow,
        numbers=("k",),
        check=_check_relu_pow,
        # Parenthesised as a whole: the text is a power, and `a**k**j` would nest to the right.
        jax="(jax.nn.relu({0})**{1})",
        numpy=lambda x, k: np.maximum(x, 0) ** k,
        kinks=(0.0,),
        examples=((1,), (2,), (3,)),
    ),
    Prim(
        "erf",
        "erf(e), the Gauss error function",
        sympy.erf,
        jax="jax.scipy.special.erf({0})",
        numpy=_erf,
    ),
    Prim("tanh", "tanh(e)", sympy.tanh, numpy=np.tanh),
    Prim(
        "sigmoid",
        "sigmoid(e) = 1/(1 + exp(-e))",
        Sigmoid,
        jax="jax.nn.sigmoid({0})",
        numpy=lambda x: 1 / (1 + np.exp(-x)),
    ),
    Prim(
        "softplus",
        "softplus(e) = log(1 + exp(e))",
        Softplus,
        jax="jax.nn.softplus({0})",
        numpy=lambda x: np.logaddexp(0, x),
    ),
    Prim(
        "gelu",
        "gelu(e) = e*Phi(e), exact (Phi: normal CDF)",
        Gelu,
        jax=f"({{0}}*{CDF}({{0}}))",
        numpy=lambda x: x * (1 + _erf(x / np.sqrt(2))) / 2,
    ),
    Prim("silu", "silu(e) = e*sigmoid(e) (swish)", build=lambda x: x * Sigmoid(x)),
    Prim("sin", "sin(e)", sympy.sin, numpy=np.sin),
    Prim("cos", "cos(e)", sympy.cos, numpy=np.cos),
    Prim("exp", "exp(e)", sympy.exp, numpy=np.exp),
    Prim(
        "sqrt",
        "sqrt(e), scalars only (e.g. in normalisation)",
        build=lambda x: sympy.sqrt(x),
        vector=False,
    ),
    # ---- internal: produced by derivatives, closed forms and sympy's own simplifications ----
    Prim(
        "gelu_prime",
        "gelu'(e) = Phi(e) + e*phi(e)",
        GeluPrime,
        language=False,
        jax=f"({CDF}({{0}}) + {{0}}*jax.scipy.stats.norm.pdf({{0}}))",
        numpy=_gelu_prime,
    ),
    # The guards print as the runtime's functions (`runtime/guards.py`), their one JAX
    # implementation: finite values and gradients at zero variance and correlation ±1.
    Prim(
        "safe_sqrt",
        "sqrt(max(e, 0)), a guard of closed forms",
        SafeSqrt,
        language=False,
        jax="rt.safe_sqrt({0})",
        numpy=lambda x: np.sqrt(np.maximum(x, 0)),
        kinks=None,
    ),
    Prim(
        "safe_div",
        "x/y, and 0 where y == 0, a guard of closed forms",
        SafeDiv,
        language=False,
        jax="rt.safe_div({0}, {1})",
        numpy=lambda x, y: np.where(y == 0, 0.0, x / np.where(y == 0, 1, y)),
        kinks=None,
    ),
    Prim(
        "erfc",
        "erfc(e) = 1 - erf(e)",
        sympy.erfc,
        language=False,
        jax="jax.scipy.special.erfc({0})",
        numpy=lambda x: 1 - _erf(x),
    ),
    Prim("cosh", "cosh(e)", sympy.cosh, language=False, numpy=np.cosh),
    Prim("sinh", "sinh(e)", sympy.sinh, language=False, numpy=np.sinh),
    Prim(
        "Abs",
        "|e| as sympy writes it",
        sympy.Abs,
        language=False,
        jax="jnp.abs({0})",
        numpy=np.abs,
        kinks=(0.0,),
    ),
    Prim(
        "Sign",
        "sign(e) as sympy writes it",
        sympy.sign,
        language=False,
        numpy=np.sign,
        kinks=(0.0,),
    ),
    Prim(
        "Heaviside",
        "step(e) as sympy writes it",
        sympy.Heaviside,
        language=False,
        numpy=lambda x: np.heaviside(x, 0.5),
        kinks=(0.0,),
    ),
):
    register(_prim)
