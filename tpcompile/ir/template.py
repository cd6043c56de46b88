"""The rolled program as a template program: one instruction per family (DESIGN §6).

Where this sits: after `ir/families.roll`, before the kernel analysis. `template(rolled)` turns
every family into ONE instruction of a `Program` that the Master Theorem's rules
(`kernels/forward.py`, `kernels/expect.py`, `kernels/families.py`) read like any other, with a
size per value (its number of members). Its kernel quantities are then arrays over pairs of
members, and the rules act on them elementwise, except where an operand map says otherwise.

Every operand map lives in ONE instruction type, `Mix`: value = Σ map @ operand (+ const), with
`map` a dense members × operand-members matrix (`Map`). A gather (`x[(p + k - 3) % P + 1]`), a
pooling window, a global mean and the border of a zero-padded convolution are all maps. So that
no other rule ever sees a map, the arguments of matmuls and nonlinearities are *aligned*: member i
of `W @ u` reads member i of its argument, and where the program reads another member (a
convolution's shifted input), the argument is a virtual `Mix` that gathers it first.

Where the template cannot stand for the program, `Unrollable` is raised and the caller keeps the
unrolled program: width averages (`Moment`, `ScalarDef`), means that differ between the members
of one family, constants added to H values, an output with more than one member.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from tpcompile.errors import Span
from tpcompile.ir.families import DATA, Family, Operand, RolledProgram, slot
from tpcompile.ir.nodes import Bias, Embed, LinComb, MatMul, Nonlin, Program, symbol


class Unrollable(Exception):
    """The template cannot stand for this program; the unrolled path computes it."""


class Map:
    """A constant matrix (members × operand members), hashable by value."""

    __slots__ = ("matrix", "_key")

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        self.matrix.setflags(write=False)
        self._key = (self.matrix.shape, self.matrix.tobytes())

    @classmethod
    def identity(cls, n: int) -> Map:
        return cls(np.eye(n))

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape  # type: ignore[return-value]

    @property
    def is_identity(self) -> bool:
        rows, cols = self.shape
        return rows == cols and bool(np.array_equal(self.matrix, np.eye(rows)))

    def __matmul__(self, other: Map) -> Map:
        return Map(self.matrix @ other.matrix)

    def __add__(self, other: Map) -> Map:
        return Map(self.matrix + other.matrix)

    @property
    def T(self) -> Map:  # noqa: N802 - the matrix transpose, as in NumPy
        return Map(self.matrix.T)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Map) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"Map({self.shape[0]}×{self.shape[1]})"


@dataclass(frozen=True)
class Mix:
    """value = Σ map @ operand + const: the one linear instruction with operand maps. `kind` is
    "G" (of G values) or "H" (of H values: a sum over positions of nonlinear pieces)."""

    out: str
    kind: str
    terms: tuple[tuple[Map, str], ...]
    const: sympy.Expr
    span: Span | None


@dataclass(frozen=True)
class EmbedFamily:
    """G = weight @ x[position_i] for every member i: data entering at several positions."""

    out: str
    weight: str
    positions: tuple[int, ...]
    span: Span | None
    kind = "G"


@dataclass(frozen=True)
class Template:
    """The template program and the number of members of each of its values. Its one output
    is a family; one of K > 1 members is a flatten readout, K independent readout vectors."""

    program: Program
    sizes: dict[str, int]

    @property
    def is_trivial(self) -> bool:
        """Every family has one member, or only the data is a family: nothing to gain."""
        return all(
            n == 1 or isinstance(self.program.by_name[v], EmbedFamily)
            for v, n in self.sizes.items()
        )


def _map(operand: Operand, operand_size: int) -> Map:
    out = np.zeros((len(operand.map.rows), operand_size))
    for i, row in enumerate(operand.map.rows):
        for idx, weight in row:
            out[i, idx] += float(weight)
    return Map(out)


class _Builder:
    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.instrs: list = []

    def add(self, ins: object, size: int) -> None:
        self.instrs.append(ins)
        self.sizes[ins.out] = size  # type: ignore[attr-defined]
        self.kinds[ins.out] = ins.kind  # type: ignore[attr-defined]

    def aligned(self, fam: Family, k: int) -> str:
        """The value member i of `fam` reads in operand slot k, as a value with fam's members:
        the operand itself for the identity map, else a virtual Mix gathering it."""
        operand = fam.operands[k]
        m = _map(operand, self.sizes[operand.family])
        if m.is_identity:
            return operand.family
        name = f"{operand.family}@{fam.name}#{k}"
        kind = self.kinds[operand.family]
        self.add(Mix(name, kind, ((m, operand.family),), sympy.Integer(0), None), fam.size)
        return name

    def family(self, fam: Family) -> None:
        span = getattr(fam.template, "span", None)
        if fam.kind is Embed:
            positions = tuple(row[0][0] for row in fam.operands[0].map.rows)
            self.add(EmbedFamily(fam.name, fam.weight, positions, span), fam.size)
        elif fam.kind is MatMul:
            self.add(MatMul(fam.name, fam.weight, self.aligned(fam, 0), span), fam.size)
        elif fam.kind is Nonlin:
            args = tuple(self.aligned(fam, k) for k in range(len(fam.operands)))
            fn = fam.fn.xreplace({slot(k): symbol(a) for k, a in enumerate(args)})
            self.add(Nonlin(fam.name, fn, args, span), fam.size)
        elif fam.kind is LinComb:
            self.add(self.mix(fam, span), fam.size)
        elif fam.kind is Bias and fam.size == 1:
            self.add(fam.template, 1)
        else:
            raise Unrollable(f"{fam.kind.__name__} family")

    def mix(self, fam: Family, span: Span | None) -> Mix:
        if len(set(fam.const)) > 1:
            raise Unrollable("members with different constants")
        const = fam.const[0] if fam.const else sympy.Integer(0)
        if fam.value_kind == "H" and const != 0:
            raise Unrollable("a constant added to H values")
        if any(op.family == DATA for op in fam.operands):
            raise Unrollable("data in a linear combination")
        terms = tuple((_map(op, self.sizes[op.family]), op.family) for op in fam.operands)
        return Mix(fam.name, fam.value_kind, terms, const, span)


def _output_family(rolled: RolledProgram, sizes: dict[str, int]) -> str:
    """The family the readout reads: a one-member family, or (flatten) every member of one
    family once, in any order (the readout vectors are independent and alike)."""
    outs = rolled.program.outputs
    families = {rolled.family_of[v][0] for v in outs}
    members = sorted(rolled.family_of[v][1] for v in outs)
    family = families.pop()
    if families or members != list(range(sizes[family])):
        raise Unrollable("an output that is not one whole family")
    return family


def template(rolled: RolledProgram) -> Template:
    """The template program of a rolled program (raises `Unrollable` where it cannot be one)."""
    builder = _Builder()
    for fam in rolled.families:
        builder.family(fam)
    program = rolled.program
    out_family = _output_family(rolled, builder.sizes)
    tp = Program(
        program.input, program.weights, tuple(builder.instrs), (out_family,), program.readout
    )
    return Template(tp, builder.sizes)


__all__ = ["EmbedFamily", "Map", "Mix", "Template", "Unrollable", "template"]
