"""The backward pass and the kernels: the NNGP and the NTK of a program's output.

Where this sits: the last rules of the analysis, on top of `forward.py` and `expect.py`.
By gradient independence (DESIGN §3), every backward vector dZ^g = sqrt(n) ∂f/∂Z^g is linear in
backward Gaussians — the readout v and one Ŵᵀdg per matmul use, independent of the forward pass —
with forward functions as coefficients (`backward_coefficients`, symbolic). Their covariances
follow the same memoised recursion (`backward_cov`), and the NTK sums, over every parameter and
every pair of its uses, the parameterization's factor times the backward covariance times the
forward factor (`ntk`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import sympy

from tpcompile import ir
from tpcompile.ir.template import EmbedFamily
from tpcompile.kernels.forward import eye, family_gram, gram, second_moment, total
from tpcompile.kernels.graph import KernelGraph
from tpcompile.kernels.param import Parameterization

READOUT = "v"  # the backward Gaussian of the readout


def readouts(program: ir.Program) -> list[tuple[str, str]]:
    """(backward Gaussian, output value) per readout vector: `v` for one output, `v#k` for the
    k-th of a flatten readout (independent vectors; `#` is in no value's name)."""
    if len(program.outputs) == 1:
        return [(READOUT, program.outputs[0])]
    return [(f"{READOUT}#{k}", y) for k, y in enumerate(program.outputs)]


def is_readout(gaussian: str) -> bool:
    return gaussian == READOUT or gaussian.startswith(READOUT + "#")


class _Consumers:
    """Who reads each value in the backward pass: the backward Gaussians a value feeds directly
    (`direct[value][gaussian] = coef`) and the linear combinations it is a term of."""

    def __init__(self) -> None:
        self.direct: dict[str, dict[str, sympy.Expr]] = defaultdict(dict)
        self.lincombs: dict[str, list[tuple[sympy.Expr, str]]] = defaultdict(list)


def _matmul_reads(ins: ir.MatMul, into: _Consumers) -> None:
    into.direct[ins.arg][ins.out] = sympy.Integer(1)  # dh += Ŵᵀ dg, one backward Gaussian


def _lincomb_reads(ins: ir.LinComb, into: _Consumers) -> None:
    for c, v in ins.terms:
        into.lincombs[v].append((c, ins.out))  # dv += c · dg


#: How each instruction type passes gradients back to what it reads. Embeddings and biases read
#: no value; an H value is a function of G values, differentiated where it is read.
_READS: dict[type, Callable[[Any, _Consumers], None]] = {
    ir.MatMul: _matmul_reads,
    ir.LinComb: _lincomb_reads,
}


def backward_coefficients(
    program: ir.Program, param: Parameterization
) -> dict[str, dict[str, sympy.Expr]]:
    """For every G value g: dZ^g = Σ_j coef_j · G_j over backward Gaussians G_j ("v" for the
    readout, a matmul's name for its Ŵᵀdg), each coef a function of forward G values."""
    consumers = _Consumers()
    # K readout vectors split the readout variance: var/K each
    seed = param.readout_seed(program.readout.var / len(program.outputs), sympy.sqrt)
    for gaussian, y in readouts(program):
        consumers.direct[y][gaussian] = seed
    for ins in program.instrs:
        if type(ins) in _READS:
            _READS[type(ins)](ins, consumers)
    # Which directly read values are functions of each G symbol, in the order of `direct`, and
    # through which of their terms: one pass, so that each G value differentiates only its own
    # readers, and of a sum (mean(tanh(h[t]) for t in 1..T)) only the terms it is in. The
    # derivative of a sum is the sum of the derivatives of its terms, as sympy takes it.
    readers: dict[sympy.Symbol, list[tuple[list[sympy.Expr], dict[str, sympy.Expr]]]]
    readers = defaultdict(list)
    for value, gaussians in consumers.direct.items():
        other = program.by_name[value]
        fn = other.fn if isinstance(other, ir.Nonlin) else ir.symbol(value)
        where: dict[sympy.Symbol, list[sympy.Expr]] = defaultdict(list)
        for term in sympy.Add.make_args(fn):
            for sym in term.free_symbols:
                where[sym].append(term)
        for sym, its_terms in where.items():
            readers[sym].append((its_terms, gaussians))
    grads: dict[str, dict[str, sympy.Expr]] = {}
    for ins in reversed(program.instrs):
        if ins.kind != "G":
            continue
        sym = ir.symbol(ins.out)
        # Each coefficient is summed by one Add of its terms (`+=` re-sorts at every step).
        acc: dict[str, list[sympy.Expr]] = defaultdict(list)
        for its_terms, gaussians in readers.get(sym, ()):
            partial = sympy.Add(*(sympy.diff(term, sym) for term in its_terms))
            for gauss, c in gaussians.items():
                acc[gauss].append(c * partial)
        for c, user in consumers.lincombs[ins.out]:
            for gauss, coef in grads[user].items():
                acc[gauss].append(c * coef)
        sums = {k: sympy.Add(*v) for k, v in acc.items()}
        grads[ins.out] = {k: v for k, v in sums.items() if v != 0}
    return grads


def backward_cov(graph: KernelGraph, g: str, h: str) -> sympy.Expr:
    """E[dZ^g(a) dZ^h(b)] for G values g, h, with dZ = sqrt(n) ∂f/∂Z."""
    # Keyed on the expansions, not the names: a bias and the matmul it is added to share
    # one backward vector, hence one quantity.
    key = ("D", frozenset(graph.backward[g].items()), frozenset(graph.backward[h].items()))
    if key in graph.memo:
        return graph.memo[key]
    summands = []  # one Add at the end: `+=` would re-sort the growing sum at every step
    for gauss_g, coef_g in graph.backward[g].items():
        for gauss_h, coef_h in graph.backward[h].items():
            c = gaussian_cov(graph, gauss_g, gauss_h, lambda g, h: backward_cov(graph, g, h))
            if c != 0:
                summands.append(graph.expect(coef_g, coef_h) * c)
    return graph.node(key, sympy.Add(*summands), f"D({g}, {h})")


def gaussian_cov(
    graph: KernelGraph, x: str, y: str, backward: Callable[[str, str], sympy.Expr]
) -> sympy.Expr:
    """Cov of two backward Gaussians: the readout v (variance 1) or Ŵᵀdg for a matmul g, with
    `backward(g, h)` the covariance of the matmuls' backward vectors."""
    if is_readout(x) or is_readout(y):
        # independent vectors; a flatten readout of a family is one Gaussian of its size
        return eye(graph, graph.size(x)) if x == y else sympy.Integer(0)
    wx, wy = graph.instr(x), graph.instr(y)
    if wx.weight != wy.weight:
        return sympy.Integer(0)
    var = graph.param.forward_factor(graph.program.weight[wx.weight].var)
    return var * backward(x, y)


def nngp(graph: KernelGraph) -> sympy.Expr:
    """var/K Σ_k E[y_k y_k'] + the readout bias, over the K outputs, or the K members of a
    flatten readout's family (the trace of its second moment)."""
    outs, ro = graph.program.outputs, graph.program.readout
    size = graph.size(outs[0])
    if size > 1:  # a template program's flatten readout
        square = second_moment(graph, outs[0], outs[0]) * eye(graph, size)
        second = total(graph, square, (size, size)) / size
    else:
        second = sympy.Add(*(second_moment(graph, y, y) for y in outs)) / len(outs)
    return graph.param.forward_factor(ro.var) * second + graph.param.forward_factor(ro.bias_var)


def forward_factor(graph: KernelGraph, a: Any, b: Any) -> sympy.Expr:
    """E[h_a h_b'] of two uses of one matrix: the data gram for embeddings (of one position,
    or of a family's positions)."""
    if isinstance(a, ir.Embed):
        return gram(graph, a.position, b.position)
    if isinstance(a, EmbedFamily):
        return family_gram(graph, a.positions, b.positions)
    return second_moment(graph, a.arg, b.arg)


def _use(
    graph: KernelGraph, ins: ir.MatMul | ir.Embed, uses: dict[str, list[ir.Instr]]
) -> sympy.Expr:
    uses[ins.weight].append(ins)  # every pair of uses of one matrix is summed below
    return sympy.Integer(0)


def _bias_term(graph: KernelGraph, ins: ir.Bias, uses: dict[str, list[ir.Instr]]) -> sympy.Expr:
    return graph.param.ntk_factor(ins.var) * backward_cov(graph, ins.out, ins.out)


#: The trained parameters each instruction type carries: a use of a matrix, or a bias vector.
_PARAMETERS: dict[type, Callable[[KernelGraph, Any, dict[str, list[ir.Instr]]], sympy.Expr]] = {
    ir.MatMul: _use,
    ir.Embed: _use,
    ir.Bias: _bias_term,
}


def ntk(graph: KernelGraph) -> sympy.Expr:
    """Σ over every matrix, data matrix, bias and the readout, and every pair of uses."""
    program, param = graph.program, graph.param
    uses: dict[str, list[ir.Instr]] = defaultdict(list)
    # The readout weights' and readout bias's own contribution first; the terms are summed
    # by one Add at the end, since `+=` re-sorts the growing sum at every step.
    summands = [nngp(graph)]
    for ins in program.instrs:
        if type(ins) in _PARAMETERS:
            term = _PARAMETERS[type(ins)](graph, ins, uses)
            if term != 0:
                summands.append(term)
    for w, its in uses.items():
        var = param.ntk_factor(program.weight[w].var)
        for a in its:
            for b in its:
                d = backward_cov(graph, a.out, b.out)
                if d == 0:
                    continue
                summands.append(var * d * forward_factor(graph, a, b))
    return sympy.Add(*summands)
