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


# ---- gates and weights shared over recurrent steps ----------------------------------------------

#: Gate functions (values in (0, 1)) and candidate functions, as templates over `{}`. Smooth ones
#: meet tensor Gauss-Hermite or the Mehler series; relu and abs put kinks into products of several
#: Gaussians, which only Monte Carlo integrates.
GATES = ("sigmoid({})", "0.5 + 0.5 * erf({})")
CANDIDATES = ("tanh({})", "erf({})", "relu({})", "sin({})", "abs({})")


@st.composite
def gated_recurrent_programs(draw: st.DrawFn, max_steps: int = 3) -> str:
    """A random valid recurrent program with gates: products of nonlinear functions of several
    Gaussians (`sigmoid(a) * tanh(b)`, `(1 - z) * n + z * h`) and hidden weights shared by every
    step and, optionally, by several gates of one step; H values (the previous state, a memory
    cell) are reused across steps inside the products.

    Cells: "gru" (update gate z, optional reset gate r: h' = (1 - z) n + z h), "lstm" (forget
    and input gates on a memory cell c, output gate on tanh-like of c), "mgu" (h' = z · n, one
    gate multiplying the candidate). Each gate has its own data matrix; the hidden matrices of
    the gates may coincide (weight sharing within a step, correlated Gaussians)."""
    steps = draw(st.integers(2, max_steps))
    cell = draw(st.sampled_from(("gru", "lstm", "mgu")))
    gate = draw(st.sampled_from(GATES))
    cand = draw(st.sampled_from(CANDIDATES))
    gates = {"gru": ["z", "n"], "lstm": ["f", "i", "o", "n"], "mgu": ["z", "n"]}[cell]
    if cell == "gru" and draw(st.booleans()):
        gates.insert(1, "r")
    # Hidden matrix per gate: its own, or one shared by all gates (drawn per program).
    shared = draw(st.booleans())
    hidden = {g: "W" if shared else f"W{g}" for g in gates}
    biased = {g: draw(st.booleans()) for g in gates}

    def pre(g: str, t: str, state: str | None) -> str:
        """The pre-activation of gate g at step t: data, then the hidden state, then a bias."""
        terms = [f"U{g} @ x[{t}]"]
        if state is not None:
            terms.append(f"{hidden[g]} @ {state}")
        if biased[g]:
            terms.append(f"b{g}")
        return " + ".join(terms)

    def step(t: str, prev: str | None, cprev: str | None) -> list[str]:
        g = {k: gate.format(pre(k, t, prev)) for k in gates if k != "n"}
        if cell == "lstm":
            new_c = f"{g['i']} * {cand.format(pre('n', t, prev))}"
            if cprev is not None:
                new_c = f"{g['f']} * {cprev} + {new_c}"
            return [f"c[{t}] = {new_c}", f"h[{t}] = {g['o']} * tanh(c[{t}])"]
        lines = [f"z[{t}] = {g['z']}"]
        state = prev
        if "r" in g and prev is not None:
            lines.append(f"r[{t}] = {g['r']}")
            state = f"(r[{t}] * {prev})"
        n = cand.format(pre("n", t, state))
        if cell == "mgu" or prev is None:
            return [*lines, f"h[{t}] = (1 - z[{t}]) * {n}"]
        return [*lines, f"h[{t}] = (1 - z[{t}]) * {n} + z[{t}] * {prev}"]

    body = step("1", None, None)
    loop = step("t", "h[t-1]", "c[t-1]")
    body += ["for t in 2..T {", *[f"    {line}" for line in loop], "}"]
    out = draw(st.sampled_from(("h[T]", "h[T]", "tanh(h[T])", "h[T] * h[T-1]")))

    var = lambda: draw(st.sampled_from(VARIANCES))  # noqa: E731
    decls = [f"param T = {steps}", "input x[1..T]"]
    decls += [f"weight U{g} ~ N(0, {var()})" for g in gates]
    # Gate "r" at step 1 has no state to reset and so is not used there; it is used from t = 2.
    decls += [f"weight {w} ~ N(0, {var()})" for w in sorted(set(hidden.values()))]
    decls += [f"bias b{g} ~ N(0, 0.1)" for g in gates if biased[g]]
    return "\n".join([*decls, *body, f"output {out}"]) + "\n"


# ---- convolutions over positions (index families) -----------------------------------------------

#: Nonlinearities whose expectations against themselves are closed forms or exact algebra, so a
#: whole convolutional program is computed over families (tensors of position pairs).
CONV_ONE_ARG = ("relu({})", "erf({})", "{}")


@st.composite
def conv_programs(draw: st.DrawFn, max_layers: int = 3) -> str:
    """A random valid 1-D convolutional program over P <= 6 positions: 1-3 layers of 1-3 taps
    with dilation 1 or 2, circular or zero padding, hidden tap matrices shared between layers
    or not, biases, residual connections, and a global average readout, optionally after an
    average pooling of windows 2 with stride 2. One nonlinearity per program."""
    size = draw(st.integers(3, 6))
    padding = draw(st.sampled_from(("circular", "zero")))
    phi = draw(st.sampled_from(CONV_ONE_ARG))
    layers = draw(st.integers(1, max_layers))
    decls = [f"input x[1..{size}]", "weight A[1..3] ~ N(0, 0.7)"]
    body: list[str] = []
    hidden: set[int] = set()
    biases = 0
    for layer in range(1, layers + 1):
        taps = draw(st.integers(1, 3))
        dilation = draw(st.integers(1, 2))
        off = f"(k - {1 + taps // 2}) * {dilation}"
        if padding == "circular":
            index, cond = f"(p + {off} + {size - 1}) % {size} + 1", ""
        else:
            index, cond = f"p + {off}", f" if p + {off} >= 1 and p + {off} <= {size}"
        if layer == 1:
            term = f"A[k] @ x[{index}]"
        else:
            j = draw(st.integers(1, layers))
            hidden.add(j)
            term = f"K{j}[k] @ {phi.format(f'h{layer - 1}[{index}]')}"
        rhs = f"sum({term} for k in 1..{taps}{cond})"
        if layer > 1 and draw(st.booleans()):
            rhs = f"h{layer - 1}[p] + {rhs}"
        if draw(st.booleans()):
            biases += 1
            rhs += f" + b{biases}"
        body.append(f"for p in 1..{size} {{\n    h{layer}[p] = {rhs}\n}}")
    last = phi.format(f"h{layers}")
    if size >= 4 and draw(st.booleans()):
        pooled = phi.format(f"h{layers}[2 * q - 1 + k]")
        body.append(f"for q in 1..{size // 2} {{\n    pool[q] = mean({pooled} for k in 0..1)\n}}")
        body.append(f"output mean(pool[q] for q in 1..{size // 2})")
    else:
        body.append(
            f"output mean({last.replace(f'h{layers}', f'h{layers}[p]')} for p in 1..{size})"
        )
    decls += [
        f"weight K{j}[1..3] ~ N(0, {draw(st.sampled_from(VARIANCES))})" for j in sorted(hidden)
    ]
    decls += [f"bias b{i} ~ N(0, 0.1)" for i in range(1, biases + 1)]
    return "\n".join([*decls, *body]) + "\n"
