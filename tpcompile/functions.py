"""Sympy primitives for the language's nonlinearities, and their printing to JAX source.

Where this sits in the pipeline: the elaborator turns builtin calls into sympy expressions built
from the primitives below (through the rule table in `tpcompile.rules`); the kernel analysis
differentiates them (NTK backward pass) and takes Gaussian expectations of them
(`tpcompile.closed_forms`); the emitter prints every expression, closed forms included, with
`JaxPrinter`, so a formula is written once (in sympy) and never again by hand in JAX.

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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.nn
import jax.numpy as jnp
import jax.scipy.special
import jax.scipy.stats
import sympy
from sympy.core.function import ArgumentIndexError
from sympy.printing.numpy import JaxPrinter as _SympyJaxPrinter
from sympy.printing.precedence import PRECEDENCE

__all__ = [
    "Gelu",
    "GeluPrime",
    "JaxPrinter",
    "PRIMITIVES",
    "Relu",
    "ReluPow",
    "SafeDiv",
    "SafeSqrt",
    "Sigmoid",
    "Softplus",
    "Step",
    "lambdify_jax",
    "to_jax",
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


class Gelu(_Primitive):
    """Exact GELU: x * Phi(x), Phi the standard normal CDF. Derivative: GeluPrime."""

    _evalf_via = sympy.erf

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero:
            return sympy.S.Zero
        if _real_number(x) and not x.is_Float:
            # Exact numbers become exact erf expressions; floats stay unevaluated until evalf.
            return x * _std_normal_cdf(x)
        return None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        return GeluPrime(x)

    def _eval_rewrite_as_erf(self, x: sympy.Expr, **kwargs: Any) -> sympy.Expr:
        return x * _std_normal_cdf(x)




class GeluPrime(_Primitive):
    """Derivative of exact GELU: Phi(x) + x*phi(x). Derivative: (2 - x**2)*phi(x)."""

    _evalf_via = sympy.erf

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero:
            return sympy.S.Half
        if _real_number(x) and not x.is_Float:
            return _std_normal_cdf(x) + x * _std_normal_pdf(x)
        return None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        # Written with sympy builtins (not a new primitive) so the closed-form table sees a
        # polynomial times a Gaussian, which it integrates exactly.
        return (2 - x**2) * sympy.exp(-(x**2) / 2) / sympy.sqrt(2 * sympy.pi)

    def _eval_rewrite_as_erf(self, x: sympy.Expr, **kwargs: Any) -> sympy.Expr:
        return _std_normal_cdf(x) + x * _std_normal_pdf(x)




class Sigmoid(_Primitive):
    """Logistic sigmoid 1/(1 + exp(-x)). Derivative: Sigmoid*(1 - Sigmoid)."""

    _evalf_via = sympy.exp

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero:
            return sympy.S.Half
        if _real_number(x) and not x.is_Float:
            return 1 / (1 + sympy.exp(-x))
        return None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        s = Sigmoid(x)
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x: sympy.Expr, **kwargs: Any) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-x))



    def _eval_is_extended_positive(self) -> bool | None:
        return True if self.args[0].is_extended_real else None


class Softplus(_Primitive):
    """softplus(x) = log(1 + exp(x)). Derivative: Sigmoid."""

    _evalf_via = sympy.log

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        if x.is_zero:
            return sympy.log(2)
        if _real_number(x) and not x.is_Float:
            return sympy.log(1 + sympy.exp(x))
        return None

    def derivative(self, x: sympy.Expr) -> sympy.Expr:
        return Sigmoid(x)

    def _eval_rewrite_as_log(self, x: sympy.Expr, **kwargs: Any) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(x))



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


#: Every primitive defined here, for code that needs to recognise them (e.g. the emitter's checks).
PRIMITIVES: tuple[type[sympy.Function], ...] = (
    Relu,
    Step,
    ReluPow,
    Gelu,
    GeluPrime,
    Sigmoid,
    Softplus,
    SafeSqrt,
    SafeDiv,
)

# Integers beyond this are printed as floats: JAX refuses Python ints that overflow int64, and a
# float64 cannot represent them exactly anyway.
_MAX_EXACT_INT = 2**53

_ALLOWED_PREFIXES = ("jnp.", "jax.")


class JaxPrinter(_SympyJaxPrinter):
    """Prints sympy expressions (with the primitives above) as JAX source text.

    Differences from sympy's own JaxPrinter, all deliberate:
    - module prefixes are `jnp.` and `jax.` (the generated module's imports), and any function
      that would need another module (`math.`, `functools.`, ...) is an error rather than broken
      code;
    - every constant subexpression (rationals, `sqrt(2*pi)`, ...) is printed as one float literal
      at full float64 precision (`repr(float)` round-trips), so no integer division and no
      precision lost to a 15-digit default;
    - integer exponents stay Python ints (`x**-2`), which JAX lowers to `integer_pow`, exact and
      valid for negative bases;
    - the primitives print to JAX functions with the autodiff conventions of this module.
    """

    def __init__(self, names: Mapping[sympy.Symbol, str] | None = None) -> None:
        super().__init__(settings={"fully_qualified_modules": True})
        self._names: dict[sympy.Symbol, str] = dict(names or {})

    # -- module names -------------------------------------------------------------------------

    def _module_format(self, fqn: str, register: bool = True) -> str:
        if fqn.startswith("jax.numpy."):
            fqn = "jnp." + fqn[len("jax.numpy.") :]
        elif fqn == "jax.numpy":
            fqn = "jnp"
        if not (fqn.startswith(_ALLOWED_PREFIXES) or fqn in ("jnp", "jax")):
            raise NotImplementedError(f"cannot print `{fqn}` to JAX: no jnp/jax equivalent known")
        return fqn

    # -- atoms ----------------------------------------------------------------------------------

    def _print(self, expr: Any, **kwargs: Any) -> str:
        # Constant subexpressions become one float literal; this covers Rational, Float, pi,
        # sqrt(2), exp(-1/2), ... uniformly. Integers (exponents, small coefficients) stay exact.
        if isinstance(expr, sympy.Expr) and expr.is_number and not expr.is_Integer:
            value = sympy.N(expr, 30)
            if value.is_Float:
                return self._float_literal(float(value))
        return super()._print(expr, **kwargs)

    @staticmethod
    def _float_literal(value: float) -> str:
        if value != value or value in (float("inf"), float("-inf")):
            return {"nan": "jnp.nan", "inf": "jnp.inf", "-inf": "(-jnp.inf)"}[repr(value)]
        return repr(value)

    def _print_Integer(self, expr: sympy.Integer) -> str:
        if abs(int(expr)) > _MAX_EXACT_INT:
            return self._float_literal(float(expr))
        return str(int(expr))

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if expr in self._names:
            return self._names[expr]
        return super()._print_Symbol(expr)

    def _print_Mul(self, expr: sympy.Mul) -> str:
        # Fold every constant factor (e.g. 2*sqrt(2)/sqrt(pi)) into one literal in front.
        numeric = [a for a in expr.args if a.is_number]
        if len(numeric) < 2 and all(a.is_Integer for a in numeric):
            return super()._print_Mul(expr)
        coeff = sympy.N(sympy.Mul(*numeric), 30)
        if not coeff.is_Float:
            return super()._print_Mul(expr)
        rest = sympy.Mul(*(a for a in expr.args if not a.is_number))
        literal = self._float_literal(float(coeff))
        if rest == 1:
            return literal
        return f"{literal}*{self.parenthesize(rest, PRECEDENCE['Mul'], strict=True)}"

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.base, expr.exp
        prec = PRECEDENCE["Pow"]
        if exp == sympy.S.Half:
            return f"jnp.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"1/jnp.sqrt({self._print(base)})"
        if exp == -1:
            return f"1/{self.parenthesize(base, prec, strict=False)}"
        base_str = self.parenthesize(base, prec, strict=False)
        if exp.is_Integer:
            # Parenthesised when negative so `x**(-2)` never reads as `x**-2` next to other ops.
            exp_str = str(int(exp)) if exp >= 0 else f"({int(exp)})"
            return f"{base_str}**{exp_str}"
        return f"{base_str}**{self.parenthesize(exp, prec, strict=False)}"

    # -- functions without a numpy name in sympy's tables -------------------------------------

    def _call(self, name: str, *args: sympy.Expr) -> str:
        return f"{self._module_format(name)}({', '.join(self._print(a) for a in args)})"

    def _print_erf(self, expr: sympy.Expr) -> str:
        return self._call("jax.scipy.special.erf", *expr.args)

    def _print_erfc(self, expr: sympy.Expr) -> str:
        return self._call("jax.scipy.special.erfc", *expr.args)

    def _print_gamma(self, expr: sympy.Expr) -> str:
        return self._call("jax.scipy.special.gamma", *expr.args)

    def _print_loggamma(self, expr: sympy.Expr) -> str:
        return self._call("jax.scipy.special.gammaln", *expr.args)

    def _print_Abs(self, expr: sympy.Expr) -> str:
        # sympy maps Abs to Python's builtin `abs`; jnp.abs is the array version.
        return self._call("jnp.abs", *expr.args)

    def _print_Max(self, expr: sympy.Expr) -> str:
        return self._nested("jnp.maximum", expr.args)

    def _print_Min(self, expr: sympy.Expr) -> str:
        return self._nested("jnp.minimum", expr.args)

    def _nested(self, name: str, args: Sequence[sympy.Expr]) -> str:
        # sympy's version goes through functools.reduce, a prefix the generated module lacks.
        out = self._print(args[-1])
        for a in reversed(args[:-1]):
            out = f"{name}({self._print(a)}, {out})"
        return out

    # -- the primitives -------------------------------------------------------------------------

    def _print_Relu(self, expr: Relu) -> str:
        return self._call("jax.nn.relu", expr.args[0])

    def _print_Step(self, expr: Step) -> str:
        # `where` has gradient 0 in its condition: the autodiff convention Step' = 0.
        return f"jnp.where({self._print(expr.args[0])} > 0, 1.0, 0.0)"

    def _print_ReluPow(self, expr: ReluPow) -> str:
        x, k = expr.args
        # Parenthesised as a whole: the text is a power, and `a**k**j` would nest to the right.
        return f"({self._call('jax.nn.relu', x)}**{int(k)})"

    def _print_Gelu(self, expr: Gelu) -> str:
        x = expr.args[0]
        cdf = self._call("jax.scipy.stats.norm.cdf", x)
        return f"({self.parenthesize(x, PRECEDENCE['Mul'])}*{cdf})"

    def _print_GeluPrime(self, expr: GeluPrime) -> str:
        x = expr.args[0]
        cdf = self._call("jax.scipy.stats.norm.cdf", x)
        pdf = self._call("jax.scipy.stats.norm.pdf", x)
        return f"({cdf} + {self.parenthesize(x, PRECEDENCE['Mul'])}*{pdf})"

    def _print_Sigmoid(self, expr: Sigmoid) -> str:
        return self._call("jax.nn.sigmoid", expr.args[0])

    def _print_Softplus(self, expr: Softplus) -> str:
        return self._call("jax.nn.softplus", expr.args[0])

    def _print_SafeSqrt(self, expr: SafeSqrt) -> str:
        # The double `where` keeps the gradient finite (0) where the argument is 0: kernels stay
        # differentiable in their inputs on the diagonal (correlation ±1) and at zero variance.
        x = self._print(expr.args[0])
        return f"jnp.where({x} > 0, jnp.sqrt(jnp.where({x} > 0, {x}, 1.0)), 0.0)"

    def _print_SafeDiv(self, expr: SafeDiv) -> str:
        x, y = (self._print(a) for a in expr.args)
        # The inner `where` keeps the untaken branch finite, so its gradient is not NaN either.
        return f"jnp.where({y} == 0, 0.0, ({x})/jnp.where({y} == 0, 1.0, {y}))"


def to_jax(expr: sympy.Expr, names: dict[sympy.Symbol, str] | None = None) -> str:
    """JAX source text of `expr`, with each symbol in `names` printed as the given name."""
    return JaxPrinter(names).doprint(sympy.sympify(expr))


def lambdify_jax(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> Callable[..., jax.Array]:
    """A JAX function of `symbols` (positional, in order) computing `expr`.

    The source is printed from the sympy expression and compiled with `exec`; it never contains
    user text, only names generated here. The result is broadcast to the arguments' common shape
    (a constant expression still returns an array), in the arguments' float dtype.
    """
    expr = sympy.sympify(expr)
    symbols = list(symbols)
    missing = expr.free_symbols - set(symbols)
    if missing:
        names = ", ".join(sorted(str(s) for s in missing))
        raise ValueError(f"lambdify_jax: expression has symbols not in the argument list: {names}")
    # Generated argument names: sympy symbol names need not be Python identifiers.
    arg_names = {s: f"_a{i}" for i, s in enumerate(symbols)}
    body = to_jax(expr, arg_names)
    source = f"def _generated({', '.join(arg_names[s] for s in symbols)}):\n    return {body}\n"
    namespace: dict[str, Any] = {"jax": jax, "jnp": jnp}
    exec(compile(source, "<tpcompile.functions.lambdify_jax>", "exec"), namespace)
    raw = namespace["_generated"]

    def call(*args: Any) -> jax.Array:
        out = raw(*args)
        dtype = jnp.result_type(*args, float)
        shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
        return jnp.broadcast_to(jnp.asarray(out, dtype=dtype), shape)

    call.source = source  # type: ignore[attr-defined]
    call.__doc__ = f"Generated from the sympy expression: {expr}"
    return call
