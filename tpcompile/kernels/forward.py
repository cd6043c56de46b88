"""The forward rules of the Master Theorem: means, sources and covariances of G values.

Where this sits: the kernel graph (`graph.py`) is filled by these rules and by the expectation
engine (`expect.py`), which asks `cov` for the covariances of the Gaussians it integrates over.
Each rule is keyed by instruction type, as in an interpreter:

- linear combinations expand bilinearly (`LINEAR`), on the left first, then on the right;
- two leaves meet by `LEAF_PAIRS[(type(a), type(b))]`; leaves of different random families
  (any pair not in the table) are independent, covariance 0.

Cov(Z^{W h}(a), Z^{W h'}(b)) = s2 · E[Z^h(a) Z^h'(b)] for two uses of the SAME matrix, s2 ·
<x_p(a), x_q(b)>/d on data, and a bias is one G vector shared by all inputs (DESIGN §3).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy

from tpcompile import ir
from tpcompile.ir.template import EmbedFamily, Map, Mix, Unrollable
from tpcompile.kernels.graph import (
    DataGram,
    Eye,
    FamilyGram,
    KernelGraph,
    Mapped,
    Ref,
    Total,
    to_side,
)

_ZERO = sympy.Integer(0)


def mean(graph: KernelGraph, g: str) -> sympy.Expr:
    """E[Z^g]: a bias's mean, propagated through linear combinations; 0 for matmuls."""
    key = ("mu", g)  # memoised: a recurrence's linear combinations nest T deep
    if key not in graph.facts:
        ins = graph.instr(g)
        rule = _MEANS.get(type(ins))
        graph.facts[key] = rule(graph, ins) if rule is not None else _ZERO
    return graph.facts[key]


def _mix_mean(graph: KernelGraph, ins: Mix) -> sympy.Expr:
    """const + Σ map @ mean(operand): one number, or the template cannot stand (`Unrollable`)."""
    total = ins.const
    for m, v in ins.terms:
        mu = mean(graph, v)
        if mu != 0:
            sums = set(m.matrix.sum(axis=1).tolist())
            if len(sums) > 1:
                raise Unrollable("members with different means")
            total += sympy.Float(sums.pop()) * mu
    return total


_MEANS: dict[type, Callable[[KernelGraph, ir.Instr], sympy.Expr]] = {
    ir.Bias: lambda graph, ins: ins.mean,
    ir.LinComb: lambda graph, ins: (
        ins.const + sum((c * mean(graph, v) for c, v in ins.terms), _ZERO)
    ),
    Mix: _mix_mean,
}


_SOURCES: dict[type, Callable[[KernelGraph, ir.Instr], frozenset[str]]] = {
    ir.MatMul: lambda graph, ins: frozenset([ins.weight]),
    ir.Embed: lambda graph, ins: frozenset([ins.weight]),
    ir.Bias: lambda graph, ins: frozenset([ins.out]),
    ir.LinComb: lambda graph, ins: _terms_sources(graph, ins),
    Mix: lambda graph, ins: _terms_sources(graph, ins),
    EmbedFamily: lambda graph, ins: frozenset([ins.weight]),
}


def _terms_sources(graph: KernelGraph, ins: ir.LinComb | Mix) -> frozenset[str]:
    return frozenset().union(*(sources(graph, v) for _, v in ins.terms))


def sources(graph: KernelGraph, g: str) -> frozenset[str]:
    """The independent random families (matrices, biases) a G value is built from."""
    if g not in graph.sources_cache:
        ins = graph.instr(g)
        graph.sources_cache[g] = _SOURCES[type(ins)](graph, ins)
    return graph.sources_cache[g]


def function(graph: KernelGraph, name: str) -> sympy.Expr:
    """A value as a function of G values: its symbol if G, its composed function if H."""
    ins = graph.instr(name)
    return ins.fn if isinstance(ins, ir.Nonlin) else ir.symbol(name)


def gram(graph: KernelGraph, p: int, q: int) -> sympy.Expr:
    """<x_p(a), x_q(b)>/d, a leaf read from the data."""
    text = graph.program.input.index_text
    return graph.node(("gram", p, q), DataGram(p, q), f"<{text(p)}, {text(q)}>/d")


# ---- covariance rules ---------------------------------------------------------------------------

LeafRule = Callable[[KernelGraph, ir.Instr, ir.Instr], sympy.Expr]


def second_moment(graph: KernelGraph, u: str, v: str) -> sympy.Expr:
    """E[Z^u(a) Z^v(b)] of two values (G or H): sums over positions of H values (a template's
    H `Mix`) expand linearly; everything else is a Gaussian expectation."""
    a, b = graph.instr(u), graph.instr(v)
    if type(a) in LINEAR and a.kind == "H":
        return _linear(graph, a, lambda w: second_moment(graph, w, v), v, "left")
    if type(b) in LINEAR and b.kind == "H":
        return _linear(graph, b, lambda w: second_moment(graph, u, w), u, "right")
    return graph.expect(function(graph, u), function(graph, v))


def _matmuls(graph: KernelGraph, a: ir.MatMul, b: ir.MatMul) -> sympy.Expr:
    if a.weight != b.weight:
        return _ZERO
    second = second_moment(graph, a.arg, b.arg)
    return graph.param.forward_factor(graph.program.weight[a.weight].var) * second


def _embeds(graph: KernelGraph, a: ir.Embed, b: ir.Embed) -> sympy.Expr:
    if a.weight != b.weight:
        return _ZERO
    var = graph.param.forward_factor(graph.program.weight[a.weight].var)
    return var * gram(graph, a.position, b.position)


def _embed_families(graph: KernelGraph, a: EmbedFamily, b: EmbedFamily) -> sympy.Expr:
    if a.weight != b.weight:
        return _ZERO
    var = graph.param.forward_factor(graph.program.weight[a.weight].var)
    return var * family_gram(graph, a.positions, b.positions)


def family_gram(graph: KernelGraph, p: tuple[int, ...], q: tuple[int, ...]) -> sympy.Expr:
    """<x_p(a), x_q(b)>/d for all positions p of one family and q of another: the Gram of the
    distinct positions in order, and the selections of p and q from it as maps, so families
    that embed the same positions in another order (a convolution's taps) share one Gram."""
    base_p, base_q = tuple(sorted(set(p))), tuple(sorted(set(q)))
    label = f"<x[{len(base_p)} positions], x[{len(base_q)} positions]>/d"
    gram_node = graph.node(("gram", base_p, base_q), FamilyGram(base_p, base_q), label)
    shape = (len(base_p), len(base_q))
    return mapped(graph, gram_node, shape, _selection(p, base_p), _selection(q, base_q))


def _selection(picked: tuple[int, ...], base: tuple[int, ...]) -> Map:
    """The 0/1 matrix that picks `picked` out of `base`, one row per pick."""
    matrix = np.zeros((len(picked), len(base)))
    matrix[np.arange(len(picked)), [base.index(i) for i in picked]] = 1.0
    return Map(matrix)


def _biases(graph: KernelGraph, a: ir.Bias, b: ir.Bias) -> sympy.Expr:
    return graph.param.forward_factor(a.var) if a.out == b.out else _ZERO


#: Linear instructions: their terms (coefficient, value), expanded bilinearly.
#: A coefficient is a number, or a `Map` between the members of two families (a template's Mix).
LINEAR: dict[type, Callable[[ir.Instr], tuple[tuple[sympy.Expr | Map, str], ...]]] = {
    ir.LinComb: lambda ins: ins.terms,
    Mix: lambda ins: ins.terms,
}

#: Pairs of leaf instructions that can be correlated; every other pair is independent.
LEAF_PAIRS: dict[tuple[type, type], LeafRule] = {
    (ir.MatMul, ir.MatMul): _matmuls,
    (ir.Embed, ir.Embed): _embeds,
    (EmbedFamily, EmbedFamily): _embed_families,
    (ir.Bias, ir.Bias): _biases,
}


def cov(graph: KernelGraph, g: str, h: str) -> sympy.Expr:
    """Cov(Z^g(a), Z^h(b)) by the Master Theorem's rules."""
    key = ("cov", g, h)
    if key in graph.memo:
        return graph.memo[key]
    a, b = graph.instr(g), graph.instr(h)
    if type(a) in LINEAR:
        formula = _linear(graph, a, lambda v: cov(graph, v, h), h, "left")
    elif type(b) in LINEAR:
        formula = _linear(graph, b, lambda v: cov(graph, g, v), g, "right")
    else:
        rule = LEAF_PAIRS.get((type(a), type(b)))
        formula = rule(graph, a, b) if rule is not None else _ZERO
    return graph.node(key, formula, f"Σ({g}, {h})")


def _linear(
    graph: KernelGraph,
    ins: ir.Instr,
    of: Callable[[str], sympy.Expr],
    other: str,
    side: str,
) -> sympy.Expr:
    """Σ coef · of(term) over a linear instruction's terms, on the `side` it stands: a number
    scales, a `Map` maps the member axis of that side (a node of its own)."""
    out = []
    for c, v in LINEAR[type(ins)](ins):
        q = of(v)
        if q == 0:
            continue
        if not isinstance(c, Map):
            out.append(c * q)
            continue
        shape = (graph.size(v), graph.size(other))
        left, right = (c, None) if side == "left" else (None, c)
        if side == "right":
            shape = shape[::-1]
        out.append(mapped(graph, q, shape, left, right))
    return sympy.Add(*out)


def _compose(outer: Map | None, inner: Map | None) -> Map | None:
    if outer is None or inner is None:
        return outer if inner is None else inner
    return outer @ inner


def mapped(
    graph: KernelGraph, q: sympy.Expr, shape: tuple[int, int], left: Map | None, right: Map | None
) -> sympy.Expr:
    """left @ q @ rightᵀ (None, or an identity: no map) as a node. A map of a mapped quantity
    is one map (the composed matrices), so a convolution's shift and its border are one
    gather of the quantity they move."""
    left = None if left is None or left.is_identity else left
    right = None if right is None or right.is_identity else right
    if left is None and right is None:
        return q
    # A number times a quantity: the map moves inside (maps are linear), where it may meet
    # another map to compose with.
    coeff, rest = sympy.sympify(q).as_coeff_Mul()
    if isinstance(rest, Ref) and rest.side == "X":
        formula = graph.nodes[rest.node].formula
        if isinstance(formula, sympy.Mul):
            c2, inner_ref = formula.as_coeff_Mul()
            if isinstance(inner_ref, Ref) and inner_ref.side == "X":
                coeff, rest = coeff * c2, inner_ref
                formula = graph.nodes[rest.node].formula
        if coeff != 1:
            return coeff * mapped(graph, rest, shape, left, right)
        if isinstance(formula, Mapped):
            q, shape = formula.inner, formula.shape
            left, right = _compose(left, formula.left), _compose(right, formula.right)
    key = ("map", left, q, right)
    label = f"{'M' if left else ''}[{q}]{'Mᵀ' if right else ''}"
    return graph.node(key, Mapped(q, shape, left, right), label)


def eye(graph: KernelGraph, size: int) -> sympy.Expr:
    """The identity over `size` members as a quantity (1 for one member)."""
    return sympy.Integer(1) if size == 1 else graph.node(("eye", size), Eye(size), "I")


def total(graph: KernelGraph, inner: sympy.Expr, shape: tuple[int, int]) -> sympy.Expr:
    """Σ of a pair quantity over all its member pairs."""
    if shape == (1, 1):
        return inner
    return graph.node(("total", inner, shape), Total(inner, shape), "Σ over members")


def pair_cov(
    graph: KernelGraph, x: tuple[str, sympy.Symbol], y: tuple[str, sympy.Symbol]
) -> sympy.Expr:
    """Cov of two G symbols each tagged with the input it is read at ("L": a, "R": b)."""
    (sx, vx), (sy, vy) = x, y
    if sx == sy:
        return to_side(cov(graph, vx.name, vy.name), sx)
    left, right = (vx, vy) if sx == "L" else (vy, vx)
    return cov(graph, left.name, right.name)
