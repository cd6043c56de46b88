"""Stage 3's data structure: the demand-driven, memoised graph of kernel quantities.

Every quantity is a function of a pair of inputs (a, b). It is evaluated in two contexts: the
*cross* context, a from batch 1 and b from batch 2 (arrays N1×N2), and the *diagonal* context,
a = b (arrays of length N, once per batch). A quantity's formula is a sympy expression over typed
references to other quantities (`Ref`), each tagged with the input pair it is read at:

    X<k>  quantity k at (a, b)       L<k>  quantity k at (a, a)       R<k>  quantity k at (b, b)

so a variance of a left-hand value is an `L` reference and a cross covariance an `X` one. In the
diagonal context all three mean the same thing. Quantities whose formula is a number are never
materialised: structural zeros vanish here, symbolically, before anything is emitted.

`KernelGraph` holds the nodes and the memo; the rules that fill it live beside it, one concept
per module: `forward.py` (means and covariances of G values, by instruction type), `expect.py`
(Gaussian expectations: the reduction order as one ordered rule list), `numeric.py` (the
numerical rule of what stays), `backward.py` (the NTK), `param.py` (the parameterization);
`analyse` in `kernels/__init__.py` runs them on a program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy

from tpcompile import ir
from tpcompile.errors import TPError
from tpcompile.kernels.closed_forms import S11, S12, S22
from tpcompile.kernels.param import NTK, Parameterization
from tpcompile.kernels.plan import NumericOptions, NumericSpec

SIDES = ("X", "L", "R")


class Ref(sympy.Symbol):
    """A reference to kernel quantity `node`, read at the input pair `side` ("X", "L" or "R").

    A sympy symbol, so formulas stay sympy expressions; its printed name is `X12`, but what it
    refers to is carried by the object (`ref.side`, `ref.node`), never parsed back from text.
    """

    side: str
    node: int

    def __new__(cls, side: str, node: int) -> Ref:
        # One object per reference: the rules ask for the same references again and again
        # (every entry of a numerical quantity's covariance is one), and a sympy symbol is
        # slow to build.
        key = (side, int(node))
        obj = _REFS.get(key)
        if obj is None:
            if side not in SIDES:
                raise ValueError(f"a reference's side is one of {SIDES}, got {side!r}")
            obj = super().__xnew__(cls, f"{side}{node}")
            obj.side, obj.node = key
            _REFS[key] = obj
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple[str, int], dict[str, Any]]:
        return (self.side, self.node), {}

    def _hashable_content(self) -> tuple[Any, ...]:
        return (self.side, self.node)


_REFS: dict[tuple[str, int], Ref] = {}


def side_symbol(side: str, k: int) -> Ref:
    return Ref(side, k)


@dataclass(frozen=True)
class DataGram:
    """<x_p(a), x_q(b)> / d: the data inner product of two input positions."""

    p: int
    q: int


@dataclass(frozen=True)
class ClosedForm:
    """A closed-form Gaussian expectation: `template`, an expression in S11, S12, S22 written
    once in `closed_forms`, applied to `args` (references to the covariance quantities). The
    emitter prints each distinct template once, as one small compiled function."""

    template: sympy.Expr
    args: tuple[sympy.Expr, ...]
    pair: str

    def substituted(self) -> sympy.Expr:
        return self.template.xreplace(dict(zip((S11, S12, S22), self.args, strict=False)))


@dataclass(frozen=True)
class Mapped:
    """left @ inner @ rightᵀ over the member axes of a family quantity (DESIGN §6): a linear map
    applied to a pair quantity `inner` of members `shape`; None is the identity. `left`/`right`
    are `ir.template.Map`s."""

    inner: sympy.Expr
    shape: tuple[int, int]
    left: Any = None
    right: Any = None


@dataclass(frozen=True)
class FamilyGram:
    """<x_p(a), x_q(b)> / d for every pair of positions (p in `left`, q in `right`): one matmul."""

    left: tuple[int, ...]
    right: tuple[int, ...]


@dataclass(frozen=True)
class Total:
    """The sum of the pair quantity `inner` (members `shape`) over both member axes."""

    inner: sympy.Expr
    shape: tuple[int, int]


@dataclass(frozen=True)
class Eye:
    """1 on the member diagonal, 0 off it (`size` × `size`): the covariance of independent
    members, the readout vectors of a flatten readout."""

    size: int


Formula = sympy.Expr | ClosedForm | NumericSpec | DataGram | Mapped | FamilyGram | Total | Eye


@dataclass
class Node:
    id: int
    label: str
    formula: Formula
    diagonal_only: bool = False


def refs(expr: object) -> set[tuple[str, int]]:
    """The (side, node) references inside a formula."""
    if isinstance(expr, NumericSpec):
        parts = expr.expressions()
    elif isinstance(expr, ClosedForm):
        parts = list(expr.args)
    elif isinstance(expr, Mapped | Total):
        parts = [expr.inner]
    elif isinstance(expr, sympy.Basic):
        parts = [expr]
    else:
        parts = []
    out: set[tuple[str, int]] = set()
    for part in parts:
        if isinstance(part, Ref):  # most entries of a numerical quantity's covariance
            out.add((part.side, part.node))
        elif not (isinstance(part, sympy.Basic) and part.is_Number):
            out.update((r.side, r.node) for r in sympy.sympify(part).atoms(Ref))
    return out


def to_side(expr: sympy.Expr, side: str) -> sympy.Expr:
    """Read a pair quantity at (a, a) ('L') or (b, b) ('R'): every reference moves there."""
    if isinstance(expr, Ref):  # the common case, without a walk of the tree
        return Ref(side, expr.node)
    if not isinstance(expr, sympy.Basic) or expr.is_number:
        return expr
    return expr.xreplace({r: Ref(side, r.node) for r in expr.atoms(Ref)})


Expectation = Callable[["KernelGraph", sympy.Expr, sympy.Expr], sympy.Expr]


@dataclass
class KernelGraph:
    """The kernel quantities of one program: nodes, the memo, and what the rules share.

    `expectation` is the Gaussian expectation engine (`expect.expect`), handed in by `analyse`
    so the forward rules can ask for second moments without importing the engine that imports
    them. `backward` maps every G value to its backward expansion (`backward.py`).
    """

    program: ir.Program
    expectation: Expectation
    options: NumericOptions = field(default_factory=NumericOptions)
    param: Parameterization = NTK
    nodes: list[Node] = field(default_factory=list)
    memo: dict[tuple, sympy.Expr] = field(default_factory=dict)
    sources_cache: dict[str, frozenset[str]] = field(default_factory=dict)
    #: memoised facts that are not quantities (a rule's choice, a factor's sources, a mean)
    facts: dict[tuple, Any] = field(default_factory=dict)
    backward: dict[str, dict[str, sympy.Expr]] = field(default_factory=dict)
    #: the node of each distinct formula: quantities that different rules reach under different
    #: keys (the taps of a convolution reading one data Gram) are computed once
    by_formula: dict[tuple[Formula, bool], sympy.Expr] = field(default_factory=dict)
    #: members per value, for a template program (`ir/template.py`); absent values have one
    sizes: dict[str, int] = field(default_factory=dict)

    def node(
        self, key: tuple, formula: Formula, label: str, diagonal_only: bool = False
    ) -> sympy.Expr:
        """Memoise `formula` under `key`; numbers and bare references are returned as they are."""
        if key in self.memo:
            return self.memo[key]
        if isinstance(formula, sympy.Basic):
            formula = sympy.sympify(formula)
            if formula.is_number or isinstance(formula, Ref):
                self.memo[key] = formula
                return formula
        same = self.by_formula.get((formula, diagonal_only))
        if same is not None:
            self.memo[key] = same
            return same
        k = len(self.nodes)
        self.nodes.append(Node(k, label, formula, diagonal_only))
        ref = Ref("L" if diagonal_only else "X", k)
        self.memo[key] = ref
        self.by_formula[(formula, diagonal_only)] = ref
        return ref

    def refuse_unsupported(self) -> None:
        for instr in self.program.instrs:
            if isinstance(instr, ir.Moment | ir.ScalarDef):
                raise TPError(
                    "width averages (avg, layernorm) are not yet supported by the kernel compiler",
                    instr.span,
                    "`tpcompile check` and `tpcompile ir` accept them; kernels come later",
                )

    def instr(self, name: str) -> ir.Instr:
        return self.program.by_name[name]

    def size(self, name: str) -> int:
        return self.sizes.get(name, 1)

    def expect(self, f: sympy.Expr, g: sympy.Expr) -> sympy.Expr:
        """E[f(Z(a)) g(Z(b))] by the expectation engine."""
        return self.expectation(self, f, g)
