"""Robustness: any text either compiles or raises TPError — never another exception, never a
hang. Random text, and random mutations of the example programs (which keep them close to valid,
so the elaborator's checks are exercised, not just the parser's)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tpcompile.lang.values as values
from tpcompile import TPError, load_program
from tpcompile.ir import Program

EXAMPLES = [p.read_text() for p in sorted((Path(__file__).parent.parent / "examples").glob("*.tp"))]
TOKENS = [
    "@",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "..",
    ",",
    "=",
    "~",
    "\n",
    ";",
    "x",
    "W",
    "h",
    "relu",
    "tanh",
    "avg",
    "layernorm",
    "sum",
    "mean",
    "for",
    "in",
    "if",
    "not",
    "and",
    "output",
    "param",
    "weight",
    "bias",
    "input",
    "def",
    "readout",
    "N(0, 1)",
    "0",
    "1",
    "2.5",
    "-3",
    "1e-3",
    "t",
    "L",
    "T",
    "P",
    "k",
    " ",
]

# Each example must elaborate well within this; mutations may unroll more, so the instruction
# cap is lowered to keep every case fast.
TIME_BOUND_S = 5.0


def outcome(text: str) -> Program | TPError:
    start = time.perf_counter()
    try:
        result: Program | TPError = load_program(text, filename="fuzz.tp")
    except TPError as err:
        str(err)  # rendering must not fail either
        result = err
    assert time.perf_counter() - start < TIME_BOUND_S
    return result


@pytest.fixture(autouse=True)
def small_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "MAX_INSTRUCTIONS", 2_000)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_random_text(text: str) -> None:
    outcome(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_random_token_soup(tokens: list[str]) -> None:
    outcome(" ".join(tokens))


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "swap-lines", "dup-line"]))
        i = draw(st.integers(0, len(text)))
        if kind == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)) :]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i + 1 :]
        else:
            lines = text.splitlines()
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            if kind == "swap-lines":
                lines[a], lines[b] = lines[b], lines[a]
            else:
                lines.insert(b, lines[a])
            text = "\n".join(lines) + "\n"
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_example())
def test_mutated_examples(text: str) -> None:
    outcome(text)


def test_examples_compile_quickly() -> None:
    for text in EXAMPLES:
        assert isinstance(outcome(text), Program)


def test_no_eval_or_sympify_of_user_text() -> None:
    """A guard against regressions: expressions are built from the parse tree, never by letting
    Python or sympy parse strings (`exec` is used only on code printed from sympy objects)."""
    forbidden = [
        r"(?<!def )(?<![\w.])eval\(",
        r"parse_expr\(",
        r"sympify\(\s*[\"'a-z_]*(text|src|source)",
    ]
    root = Path(__file__).parent.parent / "tpcompile"
    for path in root.glob("*.py"):
        for pattern in forbidden:
            assert not re.search(pattern, path.read_text()), (path, pattern)
