"""Stage 2's output: the typed, unrolled SSA program that every later stage reads.

The elaborator (`lang/elaborate.py`) produces a `Program`. The kernel analysis (`kernels/`) and
the finite-width network (`finite/network.py`) are both interpreters over `Program.instrs`;
`ir/printer.py` prints it, `ir/check.py` checks its invariants.

Every value has one of the Tensor Programs types:
  A  a weight matrix (`Weight`), never a value in an instruction, only `MatMul`/`Embed`'s operand;
  G  a Gaussian vector: `MatMul`, `Embed` (data through a matrix), `Bias`, `LinComb` of G values;
  H  a coordinatewise function of G values (and C scalars): `Nonlin`, its function held as a sympy
     expression over the G values' symbols, nested functions already composed;
  C  a scalar width average: `Moment` (avg of a function of G values), `ScalarDef` (arithmetic
     on moments).
Numbers (variances, coefficients) are exact sympy numbers; `float()` them where floats are due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import sympy

from tpcompile.errors import Span


def symbol(name: str) -> sympy.Symbol:
    """The sympy symbol standing for IR value `name` inside H functions and moments."""
    return sympy.Symbol(name, real=True)


@dataclass(frozen=True)
class Weight:
    """A weight matrix (A). `on_data`: applied to the input (fan-in d), not to hidden vectors."""

    name: str
    var: sympy.Expr
    on_data: bool
    span: Span


@dataclass(frozen=True)
class MatMul:
    """G = weight @ arg, with arg a G or H value of width n."""

    out: str
    weight: str
    arg: str
    span: Span
    kind = "G"


@dataclass(frozen=True)
class Embed:
    """G = weight @ x[position]: data entering the program. `position` indexes the flattened
    positions of an indexed input (0 for an unindexed one)."""

    out: str
    weight: str
    position: int
    span: Span
    kind = "G"


@dataclass(frozen=True)
class Bias:
    """G: one random vector with iid N(mean, var) entries, shared by all examples and uses."""

    out: str
    mean: sympy.Expr
    var: sympy.Expr
    span: Span
    kind = "G"


@dataclass(frozen=True)
class LinComb:
    """G = Σ coef · value + const, the values G."""

    out: str
    terms: tuple[tuple[sympy.Expr, str], ...]
    const: sympy.Expr
    span: Span
    kind = "G"

    @property
    def expr(self) -> sympy.Expr:
        return sympy.Add(self.const, *(c * symbol(v) for c, v in self.terms))


@dataclass(frozen=True)
class Nonlin:
    """H = fn(args): fn a sympy expression over the symbols of `args` (G values and C scalars)."""

    out: str
    fn: sympy.Expr
    args: tuple[str, ...]
    span: Span
    kind = "H"


@dataclass(frozen=True)
class Moment:
    """C = avg(fn(args)) = (1/n) Σ_α fn(args_α): converges to E fn(Z) as the width grows."""

    out: str
    fn: sympy.Expr
    args: tuple[str, ...]
    span: Span
    kind = "C"


@dataclass(frozen=True)
class ScalarDef:
    """C = fn(args), fn a sympy expression over other C scalars."""

    out: str
    fn: sympy.Expr
    args: tuple[str, ...]
    span: Span
    kind = "C"


Instr = MatMul | Embed | Bias | LinComb | Nonlin | Moment | ScalarDef


@dataclass(frozen=True)
class Input:
    """The data input: `input x` (shape ()) or `input x[1..T]` (shape (T,)) or more indices."""

    name: str
    shape: tuple[int, ...]
    lows: tuple[int, ...]
    span: Span

    def index_text(self, position: int) -> str:
        """`x[t]` in the program's own indexing for a flat position (`x` if unindexed)."""
        if not self.shape:
            return self.name
        idx = []
        for size, lo in zip(reversed(self.shape), reversed(self.lows), strict=True):
            idx.append(str(lo + position % size))
            position //= size
        return f"{self.name}[{','.join(reversed(idx))}]"

    @property
    def positions(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass(frozen=True)
class Readout:
    """f = sqrt(var/n) · v · output (+ sqrt(bias_var) · β0), v ~ N(0, 1) per coordinate."""

    var: sympy.Expr
    bias_var: sympy.Expr
    span: Span | None


@dataclass(frozen=True)
class Program:
    input: Input
    weights: tuple[Weight, ...]
    instrs: tuple[Instr, ...]
    #: the values the readout reads: one, or several with independent readout vectors each
    #: (`output flatten(...)`), f = Σ_k sqrt(var / (n K)) v_k · y_k (+ the readout bias)
    outputs: tuple[str, ...]
    readout: Readout
    params: dict[str, sympy.Expr] = field(default_factory=dict)

    @cached_property
    def by_name(self) -> dict[str, Instr]:
        return {i.out: i for i in self.instrs}

    @cached_property
    def weight(self) -> dict[str, Weight]:
        return {w.name: w for w in self.weights}

    def kind(self, name: str) -> str:
        return self.by_name[name].kind
