"""Shared-subexpression printing and split sums in the generated JAX code (`codegen/cse.py`).

The point of both is readability, so the property that matters is that they change no number:
every test compares against the plain one-expression-one-line printing (`to_jax`, or the module
emitted with `cse.ENABLE_CSE` off) and asks for bitwise-equal float64 results evaluated op by
op, and results equal to a few ulps under `jax.jit`, where XLA's fused multiply-adds depend on
its fusion (see `assert_fused_close`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

import tpcompile
from tpcompile import runtime as rt
from tpcompile.codegen import cse as jaxprint_cse
from tpcompile.codegen.cse import print_block, print_sum
from tpcompile.codegen.jaxprint import to_jax
from tpcompile.kernels.closed_forms import S11, S12, S22, U, V, pair_expectation
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

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.tp"))

X, Y, Z = sympy.symbols("x y z", real=True)
ARGS = (X, Y, Z)
NAMES = {X: "a", Y: "b", Z: "c"}
PAIR_NAMES = {S11: "S11", S12: "S12", S22: "S22"}


def make_function(lines: Sequence[str], results: Sequence[str], params: Sequence[str]) -> Callable:
    """Compile `lines` then `return (results...)` into a function of `params`."""
    body = "".join(f"    {line}\n" for line in lines)
    source = f"def f({', '.join(params)}):\n{body}    return ({', '.join(results)},)\n"
    namespace: dict[str, Any] = {"jax": jax, "jnp": jnp, "rt": rt}
    exec(compile(source, "<test_codegen>", "exec"), namespace)  # noqa: S102 - our printer's text
    return namespace["f"]


def assert_fused_close(got: Sequence[Any], want: Sequence[Any], context: str) -> None:
    """Compiled (jitted) results of the named and the one-line text: equal to a few ulps.

    Not bitwise, and not by accident: XLA:CPU contracts `a*b + c` into a fused multiply-add
    wherever its fusion puts both operations in one kernel, and naming a subexpression can move
    a fusion boundary, so a contracted operation rounds once where the other text rounds twice
    (measured: 4.4e-16 absolute on O(1) kernels of random programs; with FMA unavailable,
    XLA_FLAGS=--xla_cpu_max_isa=SSE4_2, the two agree bitwise). Eagerly, one op per dispatch,
    nothing is contracted and `assert_bitwise` holds. 1e-13 relative leaves room for a few such
    roundings amplified by the closed forms' chains of operations.
    """
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        scale = np.max(np.abs(w[np.isfinite(w)]), initial=0.0)  # inf and NaN compare as such
        np.testing.assert_allclose(
            g, w, rtol=1e-13, atol=1e-13 * scale, equal_nan=True, err_msg=context
        )


def assert_bitwise(got: Sequence[Any], want: Sequence[Any], context: str) -> None:
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        assert np.array_equal(g, w, equal_nan=True), f"{context}: max diff {np.nanmax(abs(g - w))}"


def inputs(n: int, seed: int) -> list[jax.Array]:
    """Random float64 arrays with zeros and ±1 mixed in: the guards' branches and kinks."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in ARGS:
        v = rng.normal(scale=2.0, size=n)
        v[rng.random(n) < 0.15] = 0.0
        v[rng.random(n) < 0.05] = 1.0
        out.append(jnp.asarray(v, dtype=jnp.float64))
    return out


# -- random expressions ----------------------------------------------------------------------

UNARY: list[Callable[[sympy.Expr], sympy.Expr]] = [
    Relu,
    Step,
    Gelu,
    GeluPrime,
    Sigmoid,
    Softplus,
    SafeSqrt,
    lambda e: ReluPow(e, 2),
    lambda e: ReluPow(e, 3),
    sympy.exp,
    sympy.erf,
    sympy.erfc,
    sympy.tanh,
    sympy.sin,
    sympy.cos,
    sympy.Abs,
    lambda e: sympy.sqrt(e**2 + 1),
    lambda e: sympy.log(e**2 + 1),
    lambda e: 1 / (e**2 + 1),
    lambda e: -e,
    lambda e: e**2,
    lambda e: e**3,
    lambda e: sympy.Rational(-3, 7) * e,
    lambda e: sympy.Rational(2, 3) / (e**2 + 1),
    lambda e: sympy.pi / sympy.sqrt(e**2 + 1),
]
BINARY: list[Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = [
    SafeDiv,
    sympy.atan2,
    sympy.Max,
    sympy.Min,
    lambda a, b: a + b,
    lambda a, b: a - b,
    lambda a, b: a * b,
    lambda a, b: -2 * a * b,
    lambda a, b: a / (b**2 + 1),
    lambda a, b: sympy.pi * a - b / 3,
    lambda a, b: a * b**-2,
    lambda a, b: SafeSqrt(a * b) * a,
    lambda a, b: sympy.Rational(1, 3) * a * b + a,
]


def random_expression(rng: random.Random, size: int) -> sympy.Expr:
    """A random expression in x, y, z built by `size` steps from a pool that starts with the
    symbols and grows by one node per step; reusing pool members makes shared subexpressions."""
    pool: list[sympy.Expr] = list(ARGS)
    for _ in range(size):
        if rng.random() < 0.5:
            new = rng.choice(UNARY)(rng.choice(pool[-6:] + pool[:3]))
        else:
            new = rng.choice(BINARY)(rng.choice(pool), rng.choice(pool[-4:]))
        if not new.is_number:
            pool.append(new)
    return sympy.Add(*pool[-3:]) if rng.random() < 0.5 else pool[-1]


def plain_and_shared(exprs: Sequence[sympy.Expr]) -> tuple[Callable, Callable, list[str]]:
    params = [NAMES[s] for s in ARGS]
    plain = make_function([], [to_jax(e, NAMES) for e in exprs], params)
    lines, results = print_block(exprs, NAMES)
    return plain, make_function(lines, results, params), lines


@pytest.mark.parametrize("seed", range(40))
def test_shared_printing_is_bitwise_the_plain_printing(seed: int) -> None:
    rng = random.Random(seed)
    exprs = [random_expression(rng, rng.randint(3, 9)) for _ in range(rng.choice((1, 1, 2)))]
    plain, shared, lines = plain_and_shared(exprs)
    args = inputs(97, seed)
    assert_bitwise(shared(*args), plain(*args), f"eager, seed {seed}: {exprs}")
    assert_fused_close(jax.jit(shared)(*args), jax.jit(plain)(*args), f"jit, seed {seed}: {exprs}")


def test_random_expressions_do_share() -> None:
    """The bitwise test above is only worth something if its expressions get named lines."""
    rng = random.Random(0)
    named = [bool(print_block([random_expression(rng, 8)], NAMES)[0]) for _ in range(40)]
    assert sum(named) >= 20


def test_no_text_is_printed_twice_and_lines_are_in_dependency_order() -> None:
    rng = random.Random(1)
    exprs = (random_expression(rng, 8) for _ in range(60))
    # Skipped: primitives whose printing writes calls of their own (ReluPow writes relu(x), as
    # Relu(x) does; Gelu and GeluPrime both write norm.cdf(x)); equal texts of different nodes.
    for expr in [e for e in exprs if not e.has(ReluPow, Gelu, GeluPrime)][:20]:
        lines, (result,) = print_block([expr], NAMES)
        defined: set[str] = set()
        for line in lines:
            name, text = line.split(" = ", 1)
            used = set(re.findall(r"\bt\d+\b", text))
            assert used <= defined, f"{line} uses a name defined later"
            defined.add(name)
        assert set(re.findall(r"\bt\d+\b", result)) <= defined
        # Each named text appears on its own line only (it is a name everywhere else).
        for line in lines:
            text = line.split(" = ", 1)[1]
            others = [ln for ln in lines if ln != line] + [result]
            assert not any(text in other for other in others), text


def test_templates_count_their_repeated_arguments() -> None:
    """Gelu's template writes its argument twice (`{0}*cdf({0})`), GeluPrime's three times: one
    use each in the sympy tree, but several in the text, so the argument gets a name."""
    lines, (result,) = print_block([Gelu(X * Y + Z)], NAMES)
    assert lines == ["t0 = c + a*b"]  # sympy's canonical order of the terms
    assert result == "(t0*jax.scipy.stats.norm.cdf(t0))"
    lines, (result,) = print_block([GeluPrime(X * Y)], NAMES)
    assert lines == ["t0 = a*b"]
    assert result.count("t0") == 3
    # A guard is one call of the runtime: its argument is written once and needs no name.
    assert print_block([SafeSqrt(X * Y + Z)], NAMES) == ([], ["rt.safe_sqrt(c + a*b)"])


def test_spliced_operands_are_never_named() -> None:
    """`c*x*y` evaluates (c*x)*y, `c*1/x` (c*1)/x and `a - x*y*z` subtracts x*y*z: `x*y`, `1/x`
    and `-x*y*z` are not operands there, so naming them (even when printed elsewhere too) would
    change the operations; the operands inside them are still shared."""
    e = sympy.Rational(1, 3) * X * Y * Z + sympy.exp(X * Y * Z)
    assert print_block([e, sympy.cos(X * Y * Z)], NAMES) == (
        ["t0 = a*b*c"],
        ["0.3333333333333333*a*b*c + jnp.exp(t0)", "jnp.cos(t0)"],
    )
    w = 1 / (X + 1)  # named where it is an operand, spelled out after `0.5*`
    assert print_block([sympy.exp(w) + w / 2, w], NAMES) == (
        ["t0 = a + 1", "t1 = 1/t0"],
        ["0.5*1/t0 + jnp.exp(t1)", "t1"],
    )
    e = sympy.exp(-X * Y * Z) + 1 - X * Y * Z * sympy.sin(Z)
    assert print_block([e, X * sympy.sin(Z)], NAMES) == (
        ["t0 = jnp.sin(c)"],
        ["-a*b*c*t0 + jnp.exp(-a*b*c) + 1", "a*t0"],
    )


def test_generated_names_avoid_symbols_and_given_names() -> None:
    t0 = sympy.Symbol("t0", real=True)
    e = sympy.exp(t0 * X) + sympy.sin(t0 * X)
    assert print_block([e], {X: "t2"}) == (["t1 = t0*t2"], ["jnp.exp(t1) + jnp.sin(t1)"])


def test_mapping_input_and_switch_off() -> None:
    e = SafeSqrt(X * Y)
    assert print_block({"u": e, "v": sympy.exp(X * Y)}, NAMES) == (
        ["t0 = a*b"],
        ["rt.safe_sqrt(t0)", "jnp.exp(t0)"],
    )
    assert print_block([e], NAMES, cse=False) == ([], [to_jax(e, NAMES)])


# -- closed forms ---------------------------------------------------------------------------


def relu_source() -> str:
    c = tpcompile.compile((ROOT / "examples" / "mlp.tp").read_text(), params={"L": 2})
    match = re.search(
        r"def pair\d+\(S11, S12, S22\):\n    \"\"\"E\[relu\(u\)·relu\(v\)\].*?\n\n", c.source, re.S
    )
    assert match, c.source
    return match.group(0)


def test_relu_closed_form_prints_each_subexpression_once() -> None:
    source = relu_source()
    assert source.count("jnp.sqrt(S11*S22)") == 1, source
    assert source.count("rt.atan2(") == 1, source
    body = source.strip().splitlines()[2:]
    assert body[-1].lstrip().startswith("return ") and len(body) <= 8, source
    for line in body:  # every guard's argument is short: a name or one operation of names
        for arg in re.findall(r"rt\.safe_\w+\(([^()]*(?:\([^()]*\))?[^()]*)\)", line):
            assert len(arg) < 40, line


@pytest.mark.parametrize(
    ("f", "g"),
    [
        (Relu(U), Relu(V)),
        (Step(U), Step(V)),
        (ReluPow(U, 2), ReluPow(V, 2)),
        (Step(U), Relu(V)),
        (ReluPow(U, 3), ReluPow(V, 2)),
        (sympy.erf(U), sympy.erf(V)),
        (Gelu(U), Gelu(V)),
    ],
    ids=str,
)
def test_closed_forms_bitwise(f: sympy.Expr, g: sympy.Expr) -> None:
    template = pair_expectation(f, g, U, V)
    if template is None:
        pytest.skip("no closed form")
    params = ["S11", "S12", "S22"]
    plain = make_function([], [to_jax(template, PAIR_NAMES)], params)
    shared = make_function(*print_block([template], PAIR_NAMES), params)
    rng = np.random.default_rng(3)
    s11, s22 = rng.exponential(size=(2, 200))
    c = np.concatenate([rng.uniform(-1, 1, 180), [1, -1, 0] * 6 + [1, -1]])
    s11[:10] = 0.0
    args = [jnp.asarray(a) for a in (s11, c * np.sqrt(s11 * s22), s22)]
    assert_bitwise(shared(*args), plain(*args), "eager")
    assert_fused_close(jax.jit(shared)(*args), jax.jit(plain)(*args), "jit")
    # Gradients are not bitwise: reverse mode sums the cotangents of a named value's uses
    # before going on, where the plain text propagated each copy separately (rounding order).
    grad_shared = jax.grad(lambda *a: shared(*a)[0].sum(), argnums=(0, 1, 2))(*args)
    grad_plain = jax.grad(lambda *a: plain(*a)[0].sum(), argnums=(0, 1, 2))(*args)
    for gs, gp in zip(grad_shared, grad_plain, strict=True):
        np.testing.assert_allclose(np.asarray(gs), np.asarray(gp), rtol=1e-12, atol=1e-14)


# -- split sums -----------------------------------------------------------------------------


def random_sum(rng: random.Random, terms: int) -> tuple[sympy.Expr, list[sympy.Symbol]]:
    symbols = list(sympy.symbols(f"n0:{terms // 2 + 2}", real=True))
    coeffs = [sympy.Rational(rng.randint(-9, 9) or 1, rng.randint(1, 7)), 1, -1, 2, sympy.pi]
    parts = [
        rng.choice(coeffs) * rng.choice(symbols) * rng.choice(symbols + [1]) for _ in range(terms)
    ]
    return sympy.Add(*parts, sympy.exp(symbols[0]), -Relu(symbols[1])), symbols


@pytest.mark.parametrize("terms", [5, 17, 40, 300])
def test_split_sum_is_bitwise_the_one_line_sum(terms: int) -> None:
    rng = random.Random(terms)
    expr, symbols = random_sum(rng, terms)
    names = {s: str(s) for s in symbols}
    params = [str(s) for s in symbols]
    one_line = to_jax(expr, names)
    lines, value = print_sum(expr, names, "acc", per_line=16)
    if len(expr.args) <= 16:
        assert (lines, value) == ([], one_line)
        return
    assert value == "acc" and len(lines) == -(-len(expr.args) // 16)
    # The lines continue one chain: joined, they are the one-line text, term for term.
    rhs = [line.split(" = ", 1)[1] for line in lines]
    assert rhs[0] + "".join(r.removeprefix("acc") for r in rhs[1:]) == one_line
    assert all(r.startswith(("acc + ", "acc - ")) for r in rhs[1:])
    plain = make_function([], [one_line], params)
    split = make_function(lines, [value], params)
    rng_np = np.random.default_rng(terms)
    args = [
        jnp.asarray(rng_np.normal(scale=10.0 ** rng_np.integers(-6, 6), size=33)) for _ in symbols
    ]
    assert_bitwise(split(*args), plain(*args), "eager")
    assert_fused_close(jax.jit(split)(*args), jax.jit(plain)(*args), "jit")


def test_split_sum_keeps_non_sums_and_switch() -> None:
    expr = sympy.Mul(X, sympy.Add(*sympy.symbols("a0:40")), evaluate=False)
    assert print_sum(expr, None, "acc", per_line=16) == ([], to_jax(expr))
    long_sum = sympy.Add(*sympy.symbols("a0:40"))
    assert print_sum(long_sum, None, "acc", per_line=0) == ([], to_jax(long_sum))


# -- whole modules --------------------------------------------------------------------------


def compile_example(path: Path, cse: bool, monkeypatch: pytest.MonkeyPatch) -> tpcompile.Compiled:
    with monkeypatch.context() as m:
        m.setattr(jaxprint_cse, "ENABLE_CSE", cse)
        return tpcompile.compile(path.read_text(), filename=str(path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_kernels_are_unchanged_by_naming(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = compile_example(path, True, monkeypatch)
    plain = compile_example(path, False, monkeypatch)
    kernel_lines = [ln for ln in plain.source.splitlines() if re.match(r" +(nngp|ntk) = ", ln)]
    if re.search(r"^def (pair|mean)\d+", plain.source, re.M) or any(
        ln.count(" + ") + ln.count(" - ") >= 16 for ln in kernel_lines
    ):
        assert shared.source != plain.source  # there is something to compare
    assert not re.search(r"^\s+t\d+ = ", plain.source, re.M)
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(4, *shared.ir.input.shape, 3))
    x2 = rng.normal(size=(3, *shared.ir.input.shape, 3))
    got, want = shared.kernel_fn(x1, x2), plain.kernel_fn(x1, x2)
    # The closed forms are jitted functions: see `assert_fused_close`.
    assert_fused_close([got.nngp, got.ntk], [want.nngp, want.ntk], path.name)
