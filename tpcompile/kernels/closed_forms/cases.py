"""The cases the closed-form table supports: (label, f(U), g(V)), g = 1 for a mean.

Where this sits: beside the closed-form table (`table.py`), read by the
tests, which check every case against quadrature, and by the docs. A hand-written core list plus
every builtin rule's NNGP pair, NTK (derivative) pair and mean, so a new rule is tested without
editing anything here.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import sympy

from tpcompile.kernels.closed_forms.table import U, V, pair_expectation
from tpcompile.prims import records
from tpcompile.prims.functions import Gelu, GeluPrime, Relu, ReluPow, Step


def _core_cases() -> list[tuple[str, sympy.Expr, sympy.Expr]]:
    u, v, one = U, V, sympy.S.One
    gauss_u, gauss_v = sympy.exp(-(u**2)), sympy.exp(-(v**2))
    half_gauss_u = sympy.exp(-(u**2) / 2)
    return [
        # Same-family pairs.
        ("relu*relu", Relu(u), Relu(v)),
        ("step*step", Step(u), Step(v)),
        ("relu_pow2*relu_pow2", ReluPow(u, 2), ReluPow(v, 2)),
        ("relu_pow3*relu_pow3", ReluPow(u, 3), ReluPow(v, 3)),
        ("relu_pow4*relu_pow4", ReluPow(u, 4), ReluPow(v, 4)),
        ("relu(2u)*relu(-v)", Relu(2 * u), Relu(-v)),
        ("erf*erf", sympy.erf(u), sympy.erf(v)),
        ("erf(2u)*erf(-v/2)", sympy.erf(2 * u), sympy.erf(-v / 2)),
        ("exp(-u^2)*exp(-v^2)", gauss_u, gauss_v),
        ("exp(-u^2/2)*exp(-3v^2)", sympy.exp(-(u**2) / 2), sympy.exp(-3 * v**2)),
        ("gelu*gelu", Gelu(u), Gelu(v)),
        ("gelu(2u)*gelu(v/2)", Gelu(2 * u), Gelu(v / 2)),
        ("geluprime*geluprime", GeluPrime(u), GeluPrime(v)),
        ("exp*exp", sympy.exp(u / 2), sympy.exp(-v)),
        ("sin*sin", sympy.sin(u), sympy.sin(2 * v)),
        ("sin*cos", sympy.sin(u), sympy.cos(v)),
        ("cos*cos", sympy.cos(2 * u), sympy.cos(v / 2)),
        ("sin(u+1)*cos(2v-1/2)", sympy.sin(u + 1), sympy.cos(2 * v - sympy.S.Half)),
        ("sin^2*cos^2", sympy.sin(u) ** 2, sympy.cos(v) ** 2),
        ("u*v", u, v),
        ("u^2*v^2", u**2, v**2),
        ("u^3*v", u**3, v),
        ("u^3*v^3", u**3, v**3),
        ("u^4*v^2", u**4, v**2),
        # Mixed pairs.
        ("relu*step", Relu(u), Step(v)),
        ("step*relu(-v)", Step(u), Relu(-v)),
        ("relu(2u)*step(-v/3)", Relu(2 * u), Step(-v / 3)),
        ("relu*relu_pow2", Relu(u), ReluPow(v, 2)),
        ("relu_pow2*step", ReluPow(u, 2), Step(v)),
        ("relu_pow3*relu", ReluPow(u, 3), Relu(v)),
        ("u*relu", u, Relu(v)),
        ("u^2*relu", u**2, Relu(v)),
        ("relu*v^3", Relu(u), v**3),
        ("step*v", Step(u), v),
        ("step*v^2", Step(u), v**2),
        ("u*relu(u)*relu(v)", u * Relu(u), Relu(v)),
        ("u*step(-u)*v^2", u * Step(-u), v**2),
        ("erf*v", sympy.erf(u), v),
        ("erf(2u)*v^3", sympy.erf(2 * u), v**3),
        ("u^2*erf", u**2, sympy.erf(v)),
        ("erf*step", sympy.erf(u), Step(v)),
        ("step(-u)*erf(v/2)", Step(-u), sympy.erf(v / 2)),
        ("erf*exp(-v^2)", sympy.erf(u), gauss_v),
        ("erf*cos", sympy.erf(u), sympy.cos(v)),
        ("u*gelu", u, Gelu(v)),
        ("gelu*v^2", Gelu(u), v**2),
        ("u*geluprime", u, GeluPrime(v)),
        ("geluprime*v^3", GeluPrime(u), v**3),
        ("u^2*exp(-u^2)*exp(-v^2)", u**2 * gauss_u, gauss_v),
        ("u^2*exp(-u^2/2)*v*exp(-v^2/2)", u**2 * half_gauss_u, v * sympy.exp(-(v**2) / 2)),
        ("exp(-u^2)*cos", gauss_u, sympy.cos(v)),
        ("sin*exp(-v^2)", sympy.sin(u), gauss_v),
        ("exp*sin", sympy.exp(u), sympy.sin(v)),
        ("u*sin", u, sympy.sin(v)),
        ("u^2*exp", u**2, sympy.exp(v / 2)),
        ("exp(u)*cos(u)*exp(v)", sympy.exp(u) * sympy.cos(u), sympy.exp(v)),
        # Means.
        ("E relu", Relu(u), one),
        ("E step", Step(u), one),
        ("E relu_pow2", ReluPow(u, 2), one),
        ("E relu_pow3", ReluPow(u, 3), one),
        ("E relu(-2u)", Relu(-2 * u), one),
        ("E erf", sympy.erf(u), one),
        ("E exp(-u^2)", gauss_u, one),
        ("E gelu", Gelu(u), one),
        ("E gelu(3u)", Gelu(3 * u), one),
        ("E geluprime", GeluPrime(u), one),
        ("E exp", sympy.exp(u), one),
        ("E sin", sympy.sin(u), one),
        ("E cos(2u)", sympy.cos(2 * u), one),
        ("E u^2", u**2, one),
        ("E u^3", u**3, one),
        ("E u^4", u**4, one),
        ("E u^2*exp(-u^2/2)", u**2 * sympy.exp(-(u**2) / 2), one),
    ]


def _rule_cases() -> Iterator[tuple[str, sympy.Expr, sympy.Expr]]:
    """Every builtin rule's NNGP pair, NTK (derivative) pair and mean, where the table has them,
    so a new record in `tpcompile.prims` is tested without editing this list."""
    for rule in records():
        if not rule.language:
            continue
        if not rule.vector:
            continue
        for numbers in rule.examples:
            nums = [sympy.sympify(x) for x in numbers]
            tag = rule.name + (f"({', '.join(str(x) for x in numbers)})" if numbers else "")
            f, g = rule.build(U, *nums), rule.build(V, *nums)
            candidates = [
                (f"rule {tag}", f, g),
                (f"rule {tag}'", sympy.diff(f, U), sympy.diff(g, V)),
                (f"rule E {tag}", f, sympy.S.One),
            ]
            for label, a, b in candidates:
                if pair_expectation(a, b, U, V) is not None:
                    yield label, a, b


@cache
def table_cases() -> tuple[tuple[str, sympy.Expr, sympy.Expr], ...]:
    cases = _core_cases() + list(_rule_cases())
    unsupported = [label for label, f, g in cases if pair_expectation(f, g, U, V) is None]
    if unsupported:
        raise AssertionError(f"TABLE_CASES lists unsupported entries: {unsupported}")
    return tuple(cases)


def markdown_table() -> str:
    """The builtins table of docs/language.md, generated from the records
    (`python -m tpcompile.kernels.closed_forms.cases`).

    The last column says how the kernel compiler evaluates E[φ(u) φ(v)] and E[φ'(u) φ'(v)] for
    zero-mean arguments: in closed form (this package's table) or numerically.
    """
    rows = ["| builtin | meaning | kernel: E[φφ'] / E[φ'φ'] |", "|---|---|---|"]
    for rule in records():
        if not rule.language:
            continue
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
