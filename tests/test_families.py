"""Index families (`ir/families.py`): the unrolled program rolled into templates.

The oracle is the unrolled program itself: `unroll(roll(p))` must rebuild every instruction of p
(tested on the examples, on convolutions with every padding and on random programs), the number
of families must not grow with the number of positions, and no member of a family may depend on
another member of it (checked against the program's own dependency graph, not the roller's
depth bookkeeping).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from program_strategies import programs

from tpcompile.ir.families import DATA, describe, format_families, roll, unroll
from tpcompile.ir.nodes import Program
from tpcompile.lang.frontend import load_program

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.tp"))

CIRCULAR_2D = """
param H = 4
param W = 4
input x[1..H, 1..W]
weight K1[1..3, 1..3] ~ N(0, 2.0/9)
weight K2[1..3, 1..3] ~ N(0, 2.0/9)
bias b ~ N(0, 0.1)
for i in 1..H {
    for j in 1..W {
        h[i, j] = sum(sum(K1[u, v] @ x[(i + u - 3) % H + 1, (j + v - 3) % W + 1]
                          for v in 1..3) for u in 1..3) + b
    }
}
for i in 1..H {
    for j in 1..W {
        g[i, j] = sum(sum(K2[u, v] @ relu(h[(i + u - 3) % H + 1, (j + v - 3) % W + 1])
                          for v in 1..3) for u in 1..3)
    }
}
output mean(mean(relu(g[i, j]) for i in 1..H) for j in 1..W)
"""

ZERO_PADDED_POOLED = """
param P = 8
input x[1..P]
weight K[1..3] ~ N(0, 2.0/3)
weight V[1..3] ~ N(0, 2.0/3)
bias b ~ N(0, 0.1)
for p in 1..P {
    h[p] = sum(K[k] @ x[p + k - 2] for k in 1..3 if p + k - 2 >= 1 and p + k - 2 <= P) + b
}
for p in 1..P {
    g[p] = sum(V[k] @ erf(h[p + k - 2]) for k in 1..3 if p + k - 2 >= 1 and p + k - 2 <= P)
}
for q in 1..P // 2 {
    pool[q] = mean(relu(g[2 * q - 1 + k]) for k in 0..1)
}
output mean(pool[q] for q in 1..P // 2)
"""

STRIDED_DILATED = """
param P = 12
input x[1..P]
weight K[1..2] ~ N(0, 1.0)
weight V[1..3] ~ N(0, 1.0)
for p in 1..P // 2 {
    h[p] = sum(K[k] @ x[2 * p - 2 + k] for k in 1..2)
}
for p in 1..P // 2 {
    g[p] = sum(V[k] @ tanh(h[(p + 2 * k - 3) % (P // 2) + 1]) for k in 1..3)
}
output mean(sin(g[p]) for p in 1..P // 2)
"""


def _dependencies(program: Program) -> dict[str, set[str]]:
    """Every value's transitive operands, from the instructions alone."""
    deps: dict[str, set[str]] = {}
    for ins in program.instrs:
        direct = set()
        for attr in ("arg",):
            if hasattr(ins, attr):
                direct.add(getattr(ins, attr))
        if hasattr(ins, "terms"):
            direct |= {v for _, v in ins.terms}
        if hasattr(ins, "args"):
            direct |= set(ins.args)
        deps[ins.out] = set(direct).union(*(deps[v] for v in direct))
    return deps


def check_rolled(program: Program) -> None:
    rolled = roll(program)
    rebuilt = unroll(rolled)
    for ins in program.instrs:
        assert rebuilt[ins.out] == describe(ins), ins.out
    deps = _dependencies(program)
    seen: set[str] = {DATA}
    for fam in rolled.families:
        real = [m for m in fam.members if m in deps]
        for a in real:
            assert not deps[a] & set(real), f"{fam.name}: {a} reads a member of its own family"
        for op in fam.operands:
            assert op.family in seen, f"{fam.name} reads {op.family} before it is defined"
        seen.add(fam.name)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_roll_and_unroll(path: Path) -> None:
    check_rolled(load_program(path.read_text()))


@pytest.mark.parametrize(
    ("src", "param", "sizes"),
    [
        (CIRCULAR_2D, ("H", "W"), (3, 4, 6)),
        (ZERO_PADDED_POOLED, ("P",), (4, 8, 16)),
        (STRIDED_DILATED, ("P",), (6, 12, 24)),
        (
            (Path(__file__).resolve().parent.parent / "examples" / "cnn1d.tp").read_text(),
            ("P",),
            (3, 8, 32),
        ),
    ],
    ids=["circular-2d", "zero-padded-pooled", "strided-dilated", "cnn1d"],
)
def test_families_do_not_grow_with_positions(
    src: str, param: tuple[str, ...], sizes: tuple[int, ...]
) -> None:
    counts = []
    for size in sizes:
        program = load_program(src, {name: size for name in param})
        check_rolled(program)
        counts.append(len(roll(program).families))
    assert len(set(counts)) == 1, counts
    assert counts[0] < len(load_program(src, {name: sizes[0] for name in param}).instrs)


def test_global_mean_is_one_pooling_row() -> None:
    rolled = roll(load_program(CIRCULAR_2D))
    output = rolled.family_of[rolled.program.outputs[0]][0]
    (pool,) = [f for f in rolled.families if f.name == output]
    (operand,) = pool.operands
    assert len(operand.map.rows) == 1 and len(operand.map.rows[0]) == 16  # all 4×4 positions
    assert {w for _, w in operand.map.rows[0]} == {sympy.Rational(1, 16)}  # exact weights


def test_recurrence_is_not_a_family() -> None:
    rolled = roll(
        load_program((Path(__file__).resolve().parent.parent / "examples" / "rnn.tp").read_text())
    )
    for t in range(1, 6):
        fam, _ = rolled.family_of[f"h[{t}]"]
        assert len(next(f for f in rolled.families if f.name == fam).members) == 1


def test_printed_families_name_their_maps() -> None:
    text = format_families(roll(load_program(ZERO_PADDED_POOLED)))
    assert "h[1] … h[8] (8) : G = LinComb" in text
    assert "[sparse 4×2]" in text  # the pooling window: 4 outputs of 2 positions each


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_roll_and_unroll(src: str) -> None:
    check_rolled(load_program(src))
