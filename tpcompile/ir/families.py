"""Index families: the unrolled IR rolled back into templates over index spaces (DESIGN §6).

Where this sits: after elaboration (`lang/`), which unrolls every loop, and before the kernel
analysis. `roll(program)` groups the unrolled instructions into *families*: sets of instructions
that compute one template at different index points (the positions of a convolution, the windows
of a pooling layer). A later stage can treat a family as one value with a position axis, so that
cost and code size follow the data, not the number of positions. `unroll(rolled)` is the inverse
and the oracle: it rebuilds every member as an instruction, and the tests check that this gives
back the program that was rolled.

What makes a family (the signature rules, `_SIGNATURES`, keyed by instruction type):
- `Embed` and `MatMul`: one weight; a matmul's arguments all in one family;
- `Bias`, `Moment`, `ScalarDef`: alone (each is its own random vector or scalar);
- `Nonlin`: one composed function, its arguments slot by slot in the same families. A function
  that is a sum of terms of one template (`mean(relu(h[p]) for p ...)`) is first split into its
  terms, one `Nonlin` piece per term, and becomes a linear combination of the pieces;
- `LinComb` (and those split sums): written at one place in the source and at one depth of the
  program's graph. Members may have different terms — the border of a zero-padded convolution —
  and a term a member lacks has weight 0.

Members of one family never depend on one another: every signature fixes the depth (the longest
path from a leaf), and a dependency strictly increases it. So a family's members can be computed
side by side, which is what a later stage needs. Recurrences (`h[t]` reads `h[t-1]`) fall apart
into one family per step, as they should.

How a member reads an operand: `Operand(family, SparseMap)`. Row i of the map lists
(member index, weight) pairs: member i's value of this slot is Σ weight · operand[member index]
— one entry for a gather (`x[(p + k - 3) % P + 1]`), a few for a pooling window, a whole row for
a global mean, none (weight 0) for a term a member lacks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from tpcompile.ir.nodes import (
    Bias,
    Embed,
    Instr,
    LinComb,
    MatMul,
    Moment,
    Nonlin,
    Program,
    ScalarDef,
    symbol,
)
from tpcompile.ir.printer import format_expr

DATA = "<data>"  # the operand family of `Embed`: the input's flat positions
_ZERO, _ONE = sympy.Integer(0), sympy.Integer(1)


@dataclass(frozen=True)
class SparseMap:
    """Row i: the (member index, weight) pairs that make member i's operand value."""

    rows: tuple[tuple[tuple[int, sympy.Expr], ...], ...]

    @property
    def is_gather(self) -> bool:
        """One entry of weight 1 per row: a plain gather."""
        return all(len(r) == 1 and r[0][1] == 1 for r in self.rows)


@dataclass(frozen=True)
class Operand:
    family: str  # a family's name, or DATA
    map: SparseMap


@dataclass(frozen=True)
class Family:
    """One template over `len(members)` index points. `kind` is the instruction type of the
    members (`LinComb` also stands for a split sum of H pieces: `value_kind` says which); `fn`
    is the template of a `Nonlin` over the slot symbols `_0, _1, ...`; `const[i]` is member i's
    constant term for linear families."""

    name: str
    kind: type
    value_kind: str  # "G", "H" or "C"
    members: tuple[str, ...]
    operands: tuple[Operand, ...]
    weight: str | None = None
    fn: sympy.Expr | None = None
    const: tuple[sympy.Expr, ...] = ()
    template: Instr | None = None  # the first member, for what all members share (bias, moment)

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class RolledProgram:
    program: Program
    families: tuple[Family, ...]
    family_of: dict[str, tuple[str, int]] = field(default_factory=dict)  # value -> (family, i)


def slot(k: int) -> sympy.Symbol:
    """The k-th operand slot of a `Nonlin` template."""
    return sympy.Symbol(f"_{k}", real=True)


# ---- splitting sums into pieces -------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """A virtual `Nonlin`: one term of a split sum."""

    out: str
    fn: sympy.Expr
    args: tuple[str, ...]
    span: object
    kind = "H"


@dataclass(frozen=True)
class _Sum:
    """A `Nonlin` whose function is Σ coef · piece + const, kept as a linear family."""

    out: str
    terms: tuple[tuple[sympy.Expr, str], ...]
    const: sympy.Expr
    span: object
    kind = "H"


def _canonical(fn: sympy.Expr, args: tuple[str, ...]) -> sympy.Expr:
    return fn.xreplace({symbol(a): slot(k) for k, a in enumerate(args)})


def _ordered_args(fn: sympy.Expr) -> tuple[str, ...]:
    return tuple(sorted((s.name for s in fn.free_symbols), key=_natural))


def _natural(name: str) -> tuple:
    """`h[2]` before `h[10]`: names compared by their text and integer parts."""
    parts = name.replace("]", "[").replace(",", "[").split("[")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _split_sums(instrs: tuple[Instr, ...]) -> list:
    """Each `Nonlin` that sums two or more terms of one template becomes pieces and a `_Sum`."""
    out: list = []
    existing = {(i.fn, i.args): i.out for i in instrs if isinstance(i, Nonlin)}
    for ins in instrs:
        if not isinstance(ins, Nonlin) or not isinstance(ins.fn, sympy.Add):
            out.append(ins)
            continue
        const, terms = _ZERO, []
        for term in ins.fn.args:
            coef, rest = term.as_coeff_Mul()
            if rest.is_number:
                const += term
            else:
                terms.append((coef, rest))
        templates = [_canonical(rest, _ordered_args(rest)) for _, rest in terms]
        if len(templates) == len(set(templates)):
            out.append(ins)  # no repeated template: nothing to roll inside
            continue
        summed = []
        for k, (coef, rest) in enumerate(terms):
            args = _ordered_args(rest)
            name = existing.get((rest, args))
            if name is None:
                name = f"{ins.out}#{k}"
                existing[(rest, args)] = name
                out.append(_Piece(name, rest, args, ins.span))
            summed.append((coef, name))
        out.append(_Sum(ins.out, tuple(summed), const, ins.span))
    return out


# ---- signatures -------------------------------------------------------------------------------


def _operand_names(ins: object) -> tuple[str, ...]:
    if isinstance(ins, MatMul):
        return (ins.arg,)
    if isinstance(ins, LinComb | _Sum):
        return tuple(v for _, v in ins.terms)
    if isinstance(ins, Nonlin | _Piece | Moment | ScalarDef):
        return tuple(ins.args)
    return ()


class _Roller:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.instrs = _split_sums(program.instrs)
        self.depth: dict[str, int] = {}
        self.family_of: dict[str, tuple[str, int]] = {}
        self.groups: dict[tuple, list] = defaultdict(list)
        self.names: dict[tuple, str] = {}

    def fam(self, value: str) -> str:
        return self.family_of[value][0]

    def run(self) -> RolledProgram:
        for ins in self.instrs:
            operands = _operand_names(ins)
            self.depth[ins.out] = 1 + max((self.depth[v] for v in operands), default=0)
            key = _SIGNATURES[type(ins)](self, ins)
            group = self.groups[key]
            if not group:
                self.names[key] = ins.out
            self.family_of[ins.out] = (self.names[key], len(group))
            group.append(ins)
        # Depth is one per family and grows along every dependency: a topological order.
        groups = sorted(self.groups.items(), key=lambda kv: self.depth[kv[1][0].out])
        families = tuple(self._family(self.names[k], g) for k, g in groups)
        return RolledProgram(self.program, families, dict(self.family_of))

    # -- building one family from its members --

    def _family(self, name: str, members: list) -> Family:
        first = members[0]
        kind = {_Piece: Nonlin, _Sum: LinComb}.get(type(first), type(first))
        names = tuple(m.out for m in members)
        if isinstance(first, Embed):
            rows = tuple(((m.position, _ONE),) for m in members)
            return Family(name, Embed, "G", names, (Operand(DATA, SparseMap(rows)),), first.weight)
        if isinstance(first, LinComb | _Sum):
            return self._linear(name, kind, first.kind, members)
        operands = []
        for k, value in enumerate(_operand_names(first)):
            rows = tuple(((self.family_of[_operand_names(m)[k]][1], _ONE),) for m in members)
            operands.append(Operand(self.fam(value), SparseMap(rows)))
        fn = None
        if isinstance(first, Nonlin | _Piece):
            fn = _canonical(first.fn, first.args)
        weight = first.weight if isinstance(first, MatMul) else None
        return Family(name, kind, first.kind, names, tuple(operands), weight, fn, (), first)

    def _linear(self, name: str, kind: type, value_kind: str, members: list) -> Family:
        """One slot per operand family; a member's row lists all its terms from that family
        (one for a convolution's tap, several for a pooling window, none where it lacks one)."""
        slots: dict[str, list[dict[int, sympy.Expr]]] = {}
        for i, m in enumerate(members):
            for coef, v in m.terms:
                f, idx = self.family_of[v]
                row = slots.setdefault(f, [{} for _ in members])[i]
                row[idx] = row.get(idx, _ZERO) + coef
        operands = tuple(
            Operand(f, SparseMap(tuple(tuple(row.items()) for row in rows)))
            for f, rows in slots.items()
        )
        const = tuple(m.const for m in members)
        names = tuple(m.out for m in members)
        return Family(name, kind, value_kind, names, operands, None, None, const, members[0])


def _leaf(roller: _Roller, ins: Instr) -> tuple:
    return (type(ins).__name__, ins.weight)


def _alone(roller: _Roller, ins: Instr) -> tuple:
    return (type(ins).__name__, ins.out)


def _matmul(roller: _Roller, ins: MatMul) -> tuple:
    return ("MatMul", ins.weight, roller.fam(ins.arg))


def _nonlin(roller: _Roller, ins: Nonlin | _Piece) -> tuple:
    families = tuple(roller.fam(a) for a in ins.args)
    return ("Nonlin", _canonical(ins.fn, ins.args), families)


def _linear_site(roller: _Roller, ins: LinComb | _Sum) -> tuple:
    # One source site at one depth: the members of a convolution's loop, border included.
    span = ins.span
    site = (span.line, span.col) if span is not None else ins.out
    return (type(ins).__name__, site, roller.depth[ins.out], ins.kind)


_SIGNATURES: dict[type, Callable[[_Roller, object], tuple]] = {
    Embed: _leaf,
    MatMul: _matmul,
    Bias: _alone,
    Moment: _alone,
    ScalarDef: _alone,
    Nonlin: _nonlin,
    _Piece: _nonlin,
    LinComb: _linear_site,
    _Sum: _linear_site,
}


def roll(program: Program) -> RolledProgram:
    """Group the unrolled program's instructions into families."""
    return _Roller(program).run()


# ---- the inverse: every member as an instruction (the oracle) --------------------------------


def _member_operand(
    members: dict[str, tuple[str, ...]], operand: Operand, i: int
) -> list[tuple[str, sympy.Expr]]:
    """Member i's (value, weight) pairs of one operand slot (a flat position for DATA)."""
    if operand.family == DATA:
        return [(str(idx), w) for idx, w in operand.map.rows[i]]
    return [(members[operand.family][idx], w) for idx, w in operand.map.rows[i]]


def unroll(rolled: RolledProgram) -> dict[str, tuple]:
    """Every real member rebuilt from its family: value -> a comparable description
    (instruction type, weight, function or terms, constant). Split-sum pieces that are not
    instructions of the program are folded back into their sums."""
    members = {f.name: f.members for f in rolled.families}
    pieces: dict[str, sympy.Expr] = {}
    out: dict[str, tuple] = {}
    for fam in rolled.families:
        for i, name in enumerate(fam.members):
            reads = [_member_operand(members, op, i) for op in fam.operands]
            if fam.kind is Embed:
                out[name] = ("Embed", fam.weight, int(reads[0][0][0]))
            elif fam.kind is MatMul:
                out[name] = ("MatMul", fam.weight, reads[0][0][0])
            elif fam.kind is Nonlin:
                fn = fam.fn.xreplace({slot(k): symbol(r[0][0]) for k, r in enumerate(reads)})
                if "#" in name:
                    pieces[name] = fn
                else:
                    out[name] = ("Nonlin", fn)
            elif fam.kind is LinComb:
                terms = [(w, v) for r in reads for v, w in r]
                if fam.value_kind == "G":
                    expr = sympy.Add(fam.const[i], *(w * symbol(v) for w, v in terms))
                    out[name] = ("LinComb", expr)
                else:
                    out[name] = ("Sum", fam.const[i], terms)
            else:
                out[name] = (fam.kind.__name__, fam.template)
    for name, desc in list(out.items()):
        if desc[0] == "Sum":
            _, const, terms = desc
            fn = sympy.Add(const, *(w * pieces.get(v, symbol(v)) for w, v in terms))
            out[name] = ("Nonlin", _expand_real(fn, rolled, pieces))
    return out


def _expand_real(
    fn: sympy.Expr, rolled: RolledProgram, pieces: dict[str, sympy.Expr]
) -> sympy.Expr:
    """A split sum's term that reused a real Nonlin instruction reads that instruction's
    function, as the original sum did."""
    real = {i.out: i.fn for i in rolled.program.instrs if isinstance(i, Nonlin)}
    return fn.xreplace({symbol(v): real[v] for v in map(str, fn.free_symbols) if v in real})


def describe(ins: Instr) -> tuple:
    """The description `unroll` gives for an original instruction."""
    if isinstance(ins, Embed):
        return ("Embed", ins.weight, ins.position)
    if isinstance(ins, MatMul):
        return ("MatMul", ins.weight, ins.arg)
    if isinstance(ins, Nonlin):
        return ("Nonlin", ins.fn)
    if isinstance(ins, LinComb):
        return ("LinComb", ins.expr)
    return (type(ins).__name__, ins)


# ---- printing ----------------------------------------------------------------------------------


def format_families(rolled: RolledProgram) -> str:
    """One line per family: its members and its template with operands as maps."""
    lines = []
    for fam in rolled.families:
        head = fam.members[0] if fam.size == 1 else f"{fam.members[0]} … {fam.members[-1]}"
        ops = []
        for k, op in enumerate(fam.operands):
            how = "gather" if op.map.is_gather else "sparse"
            width = max((len(r) for r in op.map.rows), default=0)
            ops.append(f"_{k} = {op.family}[{how} {fam.size}×{width}]")
        what = fam.kind.__name__
        if fam.fn is not None:
            what += f" {format_expr(fam.fn)}"
        if fam.weight is not None:
            what += f" {fam.weight} @"
        lines.append(f"{head} ({fam.size}) : {fam.value_kind} = {what}; {', '.join(ops)}")
    return "\n".join(lines) + "\n"
