"""The one rule table of the language's builtin nonlinearities.

Where this sits in the pipeline: the parser's name check and "did you mean" hints, the elaborator
(which calls `Rule.build` to turn `relu(e)` into a sympy expression over Gaussian symbols), the
kernel analysis (which differentiates and integrates those expressions), the finite-width network
(which prints them to JAX), the docs and the tests all read `RULES`; nothing else lists
nonlinearities. Adding a builtin means adding one entry here.

Builds use the primitives of `tpcompile.functions` and sympy builtins, and prefer exact linear
decompositions (abs = 2*relu(x) - x, sign = 2*step(x) - 1, leaky relu = a*x + (1-a)*relu(x)) so the
kernel analysis only ever meets a few atoms, each with a closed form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy

from tpcompile.functions import Gelu, Relu, ReluPow, Sigmoid, Softplus, Step

__all__ = ["RULES", "Rule", "rule_names"]


def _no_check(*numbers: sympy.Expr) -> str | None:
    return None


@dataclass(frozen=True)
class Rule:
    """One builtin nonlinearity.

    `build(x, *numbers)` returns the sympy expression of the function applied to `x`; `numbers`
    are the compile-time numeric arguments named in `numbers` (already validated by `check`).
    `examples` lists valid numeric argument tuples, for docs and for tests that iterate the table.
    """

    name: str
    numbers: tuple[str, ...]
    build: Callable[..., sympy.Expr]
    doc: str
    kinks: tuple[float, ...]
    vector: bool = True
    check: Callable[..., str | None] = _no_check
    examples: tuple[tuple[float, ...], ...] = ((),)


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


def _check_real(name: str) -> Callable[..., str | None]:
    def check(a: sympy.Expr) -> str | None:
        a = sympy.sympify(a)
        if not (a.is_number and a.is_extended_real and a.is_finite):
            return f"the argument `{name}` must be a finite real number, got {a}"
        return None

    return check


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


_RULE_LIST: tuple[Rule, ...] = (
    Rule("relu", (), lambda x: Relu(x), "relu(e) = max(e, 0)", (0.0,)),
    Rule("step", (), lambda x: Step(x), "step(e) = 1 if e > 0 else 0 (derivative 0)", (0.0,)),
    Rule(
        "sign",
        (),
        lambda x: 2 * Step(x) - 1,
        "sign(e) = 2*step(e) - 1 (+1 for e > 0, -1 otherwise; derivative 0)",
        (0.0,),
    ),
    Rule("abs", (), lambda x: 2 * Relu(x) - x, "abs(e) = |e| = 2*relu(e) - e", (0.0,)),
    Rule(
        "leaky_relu",
        ("a",),
        _build_leaky_relu,
        "leaky_relu(e, a) = max(e, a*e): slope 1 for e > 0, slope a for e < 0",
        (0.0,),
        check=_check_real("a"),
        examples=((0.1,), (-0.5,)),
    ),
    Rule(
        "relu_pow",
        ("k",),
        _build_relu_pow,
        "relu_pow(e, k) = relu(e)**k, k a positive integer",
        (0.0,),
        check=_check_relu_pow,
        examples=((1,), (2,), (3,)),
    ),
    Rule("erf", (), lambda x: sympy.erf(x), "erf(e), the Gauss error function", ()),
    Rule("tanh", (), lambda x: sympy.tanh(x), "tanh(e)", ()),
    Rule("sigmoid", (), lambda x: Sigmoid(x), "sigmoid(e) = 1/(1 + exp(-e))", ()),
    Rule("softplus", (), lambda x: Softplus(x), "softplus(e) = log(1 + exp(e))", ()),
    Rule("gelu", (), lambda x: Gelu(x), "gelu(e) = e*Phi(e), exact (Phi: normal CDF)", ()),
    Rule("silu", (), lambda x: x * Sigmoid(x), "silu(e) = e*sigmoid(e) (swish)", ()),
    Rule("sin", (), lambda x: sympy.sin(x), "sin(e)", ()),
    Rule("cos", (), lambda x: sympy.cos(x), "cos(e)", ()),
    Rule("exp", (), lambda x: sympy.exp(x), "exp(e)", ()),
    Rule(
        "sqrt",
        (),
        lambda x: sympy.sqrt(x),
        "sqrt(e), scalars only (e.g. in normalisation)",
        (0.0,),
        vector=False,
    ),
)

RULES: dict[str, Rule] = {rule.name: rule for rule in _RULE_LIST}


def rule_names() -> list[str]:
    """Names of all builtin nonlinearities, sorted (for name checks and hints)."""
    return sorted(RULES)


def markdown_table() -> str:
    """The builtins table of docs/language.md, generated from RULES (`python -m tpcompile.rules`).

    The last column says how the kernel compiler evaluates E[φ(u) φ(v)] and E[φ'(u) φ'(v)] for
    zero-mean arguments: in closed form (table of `closed_forms`) or numerically.
    """
    from tpcompile.closed_forms import U, V, pair_expectation  # the table's user, not a dep

    rows = ["| builtin | meaning | kernel: E[φφ'] / E[φ'φ'] |", "|---|---|---|"]
    for rule in _RULE_LIST:
        args = ", ".join(["e", *rule.numbers])
        if not rule.vector:
            how = "scalars only"
        else:
            nums = [sympy.sympify(n) for n in rule.examples[0]]
            f, g = rule.build(U, *nums), rule.build(V, *nums)
            forms = [pair_expectation(f, g, U, V), pair_expectation(f.diff(U), g.diff(V), U, V)]
            how = " / ".join("closed form" if e is not None else "numerical" for e in forms)
        doc = rule.doc.replace("|", "\\|")
        rows.append(f"| `{rule.name}({args})` | {doc} | {how} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
