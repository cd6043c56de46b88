"""Hypothesis strategies that generate random small VALID `.tp` programs, as source text.

Used by the property tests that compare compiled kernels with finite networks
(`tests/test_finite.py`). A program has one `input x`, 1-3 matrices applied to data, hidden
matrices that may be reused (weight sharing), biases, linear combinations, one-argument
nonlinearities from the closed-form set and gates `g1 * erf(g2)`, and one output vector.

Every generated program is valid by construction: data enters only through the data matrices,
a matrix is used either on data or on hidden vectors, names are assigned once, and every declared
weight and bias is used. Variances are kept O(1) (unit-ish weight variances, `exp` scaled down)
so the finite networks' fluctuations stay moderate at widths ~1000.
"""

from __future__ import annotations

from hypothesis import strategies as st

#: One-argument nonlinearities, as templates over `{}`: differentiable almost everywhere (no
#: step/sign, whose derivative is 0 and would leave NTK terms untested), polynomially bounded or
#: tamed (exp of a scaled argument).
ONE_ARG = (
    "relu({})",
    "erf({})",
    "sin({})",
    "cos({})",
    "exp(0.3 * {})",
    "gelu({})",
    "abs({})",
    "leaky_relu({}, 0.2)",
    "{}",  # the identity: a matmul of a Gaussian vector
)

VARIANCES = ("0.5", "1.0", "1.5", "2.0")


@st.composite
def programs(draw: st.DrawFn, max_steps: int = 4) -> str:
    """A random valid program's source text."""
    n_data = draw(st.integers(1, 3))
    n_hidden = draw(st.integers(1, 3))
    n_bias = draw(st.integers(0, 2))
    body: list[str] = []
    used_hidden: set[int] = set()
    used_bias: set[int] = set()
    # G values available to later steps; every one depends on the data.
    pool = []
    for i in range(1, n_data + 1):
        body.append(f"g{i} = A{i} @ x")
        pool.append(f"g{i}")

    def pick() -> str:
        return draw(st.sampled_from(pool))

    def bias_term() -> str:
        if n_bias == 0 or not draw(st.booleans()):
            return ""
        k = draw(st.integers(1, n_bias))
        used_bias.add(k)
        return f" + b{k}"

    steps = draw(st.integers(1, max_steps))
    for step in range(1, steps + 1):
        # Each step reads the latest value (so the steps form a chain and none is dead code)
        # and possibly one earlier value (skip connections, reuse of a data embedding).
        last, other = pool[-1], pick()
        kind = draw(st.sampled_from(("matmul", "matmul", "gate", "lincomb")))
        if kind == "lincomb":
            c1 = draw(st.sampled_from(("0.5", "0.8", "1.0")))
            c2 = draw(st.sampled_from(("0.5", "-0.6", "1.0")))
            rhs = f"{c1} * {last} + {c2} * {other}" if last != other else f"{c1} * {last}"
        else:
            j = draw(st.integers(1, n_hidden))  # drawn with replacement: shared weights
            used_hidden.add(j)
            if kind == "gate":
                a, b = (last, other) if draw(st.booleans()) else (other, last)
                arg = f"{a} * erf({b})"
            else:
                arg = draw(st.sampled_from(ONE_ARG)).format(last)
            rhs = f"W{j} @ ({arg})"
        body.append(f"h{step} = {rhs}{bias_term()}")
        pool.append(f"h{step}")
    out = draw(st.sampled_from(ONE_ARG)).format(pool[-1])
    if draw(st.booleans()):
        # Gate at the output: a two-argument function of the last value and an earlier one.
        out = f"{pool[-1]} * erf({pick()})"

    decls = ["input x"]
    decls += [
        f"weight A{i} ~ N(0, {draw(st.sampled_from(VARIANCES))})" for i in range(1, n_data + 1)
    ]
    decls += [
        f"weight W{j} ~ N(0, {draw(st.sampled_from(VARIANCES))})" for j in sorted(used_hidden)
    ]
    decls += [
        f"bias b{k} ~ N({draw(st.sampled_from(('0', '0.3')))}, "
        f"{draw(st.sampled_from(('0.1', '0.5')))})"
        for k in sorted(used_bias)
    ]
    if draw(st.booleans()):
        decls.append(f"readout ~ N(0, {draw(st.sampled_from(VARIANCES))}) + N(0, 0.2)")
    return "\n".join([*decls, *body, f"output {out}"]) + "\n"
