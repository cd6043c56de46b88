"""Printing sympy expressions (primitives and closed forms included) as JAX source text.

Where this sits: the code generator (`codegen/module.py`) prints every kernel formula and closed
form with `JaxPrinter`; the finite-width network (`finite/network.py`) turns H functions into JAX
functions with `lambdify_jax`. A formula is written once, in sympy, and never again by hand.
`codegen/cse.py` builds on this printer to name shared subexpressions and split long sums.
Printed code uses only the prefixes `jnp.`, `jax.` and `rt.`; the generated module imports
`jax`, `jax.numpy as jnp`, `jax.scipy.special`, `jax.scipy.stats`, `jax.nn` and
`tpcompile.runtime as rt` (the numerical guards).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sympy
from sympy.printing.numpy import JaxPrinter as _SympyJaxPrinter
from sympy.printing.precedence import PRECEDENCE, precedence

from tpcompile.prims import by_function

__all__ = ["JaxPrinter", "jax_function", "lambdify_jax", "to_jax"]

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
        # Set by `doprint`; here too so that printing without it (`print_block`) finds them.
        self._not_supported: set[Any] = set()
        self._number_symbols: set[Any] = set()

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
        prim = by_function(type(expr)) if isinstance(expr, sympy.Function) else None
        if prim is not None and prim.jax is not None:
            return self._print_record(prim.jax, expr)
        return super()._print(expr, **kwargs)

    def _print_record(self, template: str, expr: sympy.Function) -> str:
        """A recorded nonlinearity by its JAX template (`tpcompile.prims`): each `{i}` is the
        printed i-th argument, parenthesised unless it is a symbol, a call or a non-negative
        number (so `{0}*f({0})` and `{0}**2` keep their meaning for any argument); an argument
        the template writes k times is counted k times."""
        printed = []
        for i, arg in enumerate(expr.args):
            uses = template.count(f"{{{i}}}")
            text = self._print_repeated(arg, uses) if uses > 1 else self._print(arg)
            atomic = (
                arg.is_Symbol
                or isinstance(arg, sympy.Function)
                or (arg.is_number and arg.is_nonnegative)
            )
            printed.append((text, atomic))

        def substitute(match: re.Match[str]) -> str:
            text, atomic = printed[int(match.group(1))]
            before, after = template[: match.start()], template[match.end() :]
            # A whole call argument, `f({0})` or `f(a, {1})`, needs no parentheses.
            whole = before.endswith(("(", ", ")) and after.startswith((")", ","))
            return text if atomic or whole else self._operand(text)

        return re.sub(r"\{(\d+)\}", substitute, template)

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
        quotient = rest.is_Pow and rest.exp in (-1, -sympy.S.Half)  # printed `1/...`
        if (rest.is_Mul or quotient) and precedence(rest) >= PRECEDENCE["Mul"]:
            # `c*a*b` evaluates as `(c*a)*b` and `c*1/b` as `(c*1)/b`: `a*b` or `1/b` is not one
            # operand here, so it must never be replaced by a name (that would compute `c*(a*b)`).
            return f"{literal}*{self._print_spliced(rest)}"
        return f"{literal}*{self.parenthesize(rest, PRECEDENCE['Mul'], strict=True)}"

    def _print_Add(self, expr: sympy.Add, order: str | None = None) -> str:
        return join_terms(self._add_terms(expr, order))

    def _as_ordered_terms(self, expr: sympy.Expr, order: str | None = None) -> list[sympy.Expr]:
        # The terms in sympy's canonical argument order (deterministic, fixed when the Add is
        # built), the constant last as people write it. sympy's default printing order ("lex")
        # builds a monomial table over every factor of the sum, quadratic in its size: 74 of
        # 109 s of emission for a 50-step RNN.
        return sorted(sympy.Add.make_args(expr), key=lambda term: term.is_number)

    def _add_terms(self, expr: sympy.Add, order: str | None = None) -> list[tuple[str, str]]:
        """(sign, text) of each term of a sum, in printed order: sympy's `StrPrinter._print_Add`
        split in two so `print_sum` can cut the same sequence of terms into lines."""
        prec = precedence(expr)
        out = []
        for term in self._as_ordered_terms(expr, order=order):
            # `a - x*y` evaluates `x*y` and subtracts it: the printed term `-x*y` is not one
            # operand, so it must never be replaced by a name (that would compute `a + (-x)*y`;
            # the same bits in IEEE arithmetic, but not the same operations).
            text = self._print_spliced(term) if negative_mul(term) else self._print(term)
            sign = "+"
            if text.startswith("-") and not term.is_Add:
                sign, text = "-", text[1:]
            if precedence(term) < prec or term.is_Add:
                text = f"({text})"
            out.append((sign, text))
        return out

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.base, expr.exp
        prec = PRECEDENCE["Pow"]
        if exp == sympy.S.Half:
            return f"jnp.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            # Through the node sqrt(base), so `print_block` shares it with the other sqrt(base).
            return f"1/{self._print(sympy.Pow(base, sympy.S.Half, evaluate=False))}"
        if exp == -1:
            return f"1/{self.parenthesize(base, prec, strict=False)}"
        base_str = self.parenthesize(base, prec, strict=False)
        if exp.is_Integer:
            # Parenthesised when negative so `x**(-2)` never reads as `x**-2` next to other ops.
            exp_str = str(int(exp)) if exp >= 0 else f"({int(exp)})"
            return f"{base_str}**{exp_str}"
        return f"{base_str}**{self.parenthesize(exp, prec, strict=False)}"

    # -- hooks for the shared-subexpression printer (identity here) ---------------------------

    def _print_spliced(self, expr: sympy.Expr) -> str:
        """Text of `expr` where it is spliced into the enclosing operator chain rather than
        evaluated as one operand; `_SharingPrinter` never replaces it by a name."""
        return self._print(expr)

    def _print_repeated(self, expr: sympy.Expr, uses: int) -> str:
        """Text of `expr`, which the caller writes `uses` times: `_SharingPrinter` counts all of
        them, so an argument written three times by a guard gets a name of its own."""
        return self._print(expr)

    def _operand(self, text: str) -> str:
        """`text` parenthesised as an operand, unless it is a name `_SharingPrinter` made."""
        return f"({text})"

    # -- functions without a numpy name in sympy's tables -------------------------------------

    def _call(self, name: str, *args: sympy.Expr) -> str:
        return f"{self._module_format(name)}({', '.join(self._print(a) for a in args)})"

    def _print_gamma(self, expr: sympy.Expr) -> str:
        return self._call("jax.scipy.special.gamma", *expr.args)

    def _print_loggamma(self, expr: sympy.Expr) -> str:
        return self._call("jax.scipy.special.gammaln", *expr.args)

    def _print_atan2(self, expr: sympy.Expr) -> str:
        # XLA:CPU's atan2 is a scalar libm call; runtime.angles is vectorised (4x faster).
        return f"rt.atan2({self._print(expr.args[0])}, {self._print(expr.args[1])})"

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


def join_terms(terms: Sequence[tuple[str, str]]) -> str:
    """The text of a sum from its (sign, text) terms, as `StrPrinter._print_Add` joins them."""
    (sign, first), rest = terms[0], terms[1:]
    return ("" if sign == "+" else sign) + first + "".join(f" {s} {t}" for s, t in rest)


def negative_mul(term: sympy.Expr) -> bool:
    """True when the sum printer writes `term` after a minus sign (`a - x*y` for the term
    `-x*y`): a product whose constant factors multiply to a negative number (or to a number
    of unknown sign: treating a term as spliced is always safe)."""
    if not term.is_Mul:
        return False
    coeff = sympy.Mul(*(a for a in term.args if a.is_number))
    return coeff.is_extended_negative is not False


def to_jax(expr: sympy.Expr, names: dict[sympy.Symbol, str] | None = None) -> str:
    """JAX source text of `expr`, with each symbol in `names` printed as the given name."""
    return JaxPrinter(names).doprint(sympy.sympify(expr))


def jax_function(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> Callable[..., Any]:
    """The function `def f(a0, a1, ...): return <expr printed>` of `symbols` (positional, in
    order), compiled with `exec`: the source never contains user text, only names generated
    here. Its bytecode is what `runtime.Integrand` keys compilations on."""
    expr = sympy.sympify(expr)
    symbols = list(symbols)
    missing = expr.free_symbols - set(symbols)
    if missing:
        names = ", ".join(sorted(str(s) for s in missing))
        raise ValueError(f"jax_function: expression has symbols not in the argument list: {names}")
    # Generated argument names: sympy symbol names need not be Python identifiers.
    arg_names = {s: f"_a{i}" for i, s in enumerate(symbols)}
    body = to_jax(expr, arg_names)
    source = f"def _generated({', '.join(arg_names[s] for s in symbols)}):\n    return {body}\n"
    import jax
    import jax.numpy as jnp

    from tpcompile import runtime as rt

    namespace: dict[str, Any] = {"jax": jax, "jnp": jnp, "rt": rt}
    exec(compile(source, "<tpcompile.codegen.jaxprint.jax_function>", "exec"), namespace)
    raw = namespace["_generated"]
    raw.source = source
    return raw


def lambdify_jax(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> Callable[..., Any]:
    """A JAX function of `symbols` (positional, in order) computing `expr` (`jax_function`),
    its result broadcast to the arguments' common shape (a constant expression still returns
    an array), in the arguments' float dtype.
    """
    import jax.numpy as jnp

    raw = jax_function(expr, symbols)

    def call(*args: Any) -> Any:
        out = raw(*args)
        dtype = jnp.result_type(*args, float)
        shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
        return jnp.broadcast_to(jnp.asarray(out, dtype=dtype), shape)

    call.source = raw.source  # type: ignore[attr-defined]
    call.__doc__ = f"Generated from the sympy expression: {sympy.sympify(expr)}"
    return call
