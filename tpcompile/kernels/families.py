"""The Master Theorem on families: the backward pass and the kernels of a template program.

Where this sits: the analysis of a template program (`ir/template.py`: one instruction per family,
every operand map in a `Mix`). The forward rules (`forward.py`) and the expectation engine
(`expect.py`) are the scalar ones: their quantities are arrays over pairs of members, computed
elementwise, and a `Mix` maps a member axis (`graph.Mapped`). This module does what the scalar
`backward.py` does, with the maps:

By gradient independence, the backward vector of a G family g is a sum of routes to backward
Gaussians Γ (the readout v, or Ŵᵀ dF for a matmul family F):

    dZ^g = Σ_routes Aᵀ · (φ ⊙ (B · Γ))

A route passes through at most one nonlinearity: φ is the derivative of that family's function
(1 on a route through linear instructions only), A maps g's members to the nonlinearity's
members (the composed transposes of the `Mix`es read on the way) and B the nonlinearity's members
to Γ's. An H value reaches Γ through constant maps only. So

    D(g, h) = E[dZ^g(a) dZ^h(b)]
            = Σ_{r, r'} A_rᵀ (E[φ_r(a) φ_r'(b)] ⊙ (B_r Cov(Γ_r, Γ_r') B_r'ᵀ)) A_r'

with Cov(Γ^F, Γ^G) = var · D(F, G) for two matmul families of one matrix, 1 for the readout. The
NTK sums, over every matrix and every pair of its use families F, G, the total over member pairs
of var · D(F, G) ⊙ E[arg_F arg_G], and the bias terms likewise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import sympy

from tpcompile import ir
from tpcompile.ir.template import EmbedFamily, Map, Mix, Template
from tpcompile.kernels.backward import READOUT, forward_factor, gaussian_cov, nngp
from tpcompile.kernels.expect import expect
from tpcompile.kernels.forward import mapped, total
from tpcompile.kernels.graph import KernelGraph, Mapped, Ref
from tpcompile.kernels.param import NTK, Parameterization
from tpcompile.kernels.plan import NumericOptions

_ONE = sympy.Integer(1)


@dataclass(frozen=True)
class Route:
    """dZ^g ∋ Aᵀ (φ ⊙ (B Γ)): `gaussian` Γ, `phi` a function of the nonlinearity's arguments."""

    gaussian: str
    A: Map
    phi: sympy.Expr
    B: Map


def _merge(routes: list[Route]) -> list[Route]:
    """Routes to one Γ with one φ and one B are one route with the sum of their A maps."""
    merged: dict[tuple, Map] = {}
    for r in routes:
        key = (r.gaussian, r.phi, r.B)
        merged[key] = merged[key] + r.A if key in merged else r.A
    return [Route(g, a, phi, b) for (g, phi, b), a in merged.items()]


def routes(tp: Template, param: Parameterization) -> dict[str, list[Route]]:
    """Every G value's routes to the backward Gaussians, from the output back."""
    program, size = tp.program, tp.sizes
    out = program.outputs[0]  # a flatten readout: every member its own readout vector
    seed = float(param.readout_seed(program.readout.var / size[out], sympy.sqrt))
    readout_map = Map(seed * np.eye(size[out]))
    # H values: dy = Σ C · Γ with constant maps C (members of y × members of Γ).
    h_maps: dict[str, dict[str, Map]] = defaultdict(dict)
    g_routes: dict[str, list[Route]] = defaultdict(list)

    def add_h(y: str, gaussian: str, c: Map) -> None:
        have = h_maps[y].get(gaussian)
        h_maps[y][gaussian] = c if have is None else have + c

    if program.kind(out) == "H":
        add_h(out, READOUT, readout_map)
    else:
        g_routes[out].append(Route(READOUT, Map.identity(size[out]), _ONE, readout_map))
    for ins in reversed(program.instrs):
        if isinstance(ins, ir.MatMul):
            eye = Map.identity(size[ins.out])
            if program.kind(ins.arg) == "H":
                add_h(ins.arg, ins.out, eye)
            else:
                g_routes[ins.arg].append(Route(ins.out, eye, _ONE, eye))
        elif isinstance(ins, Mix) and ins.kind == "H":
            for m, v in ins.terms:
                for gaussian, c in h_maps[ins.out].items():
                    add_h(v, gaussian, m.T @ c)
        elif isinstance(ins, Mix):
            mine = _merge(g_routes[ins.out])
            g_routes[ins.out] = mine
            for m, v in ins.terms:
                g_routes[v] += [Route(r.gaussian, r.A @ m, r.phi, r.B) for r in mine]
        elif isinstance(ins, ir.Nonlin):
            eye = Map.identity(size[ins.out])
            for arg in ins.args:
                phi = sympy.diff(ins.fn, ir.symbol(arg))
                if phi == 0:
                    continue
                for gaussian, c in h_maps[ins.out].items():
                    g_routes[arg].append(Route(gaussian, eye, phi, c))
    return {g: _merge(rs) for g, rs in g_routes.items()}


class FamilyBackward:
    """D(g, h), memoised as nodes of the graph."""

    def __init__(self, graph: KernelGraph, tp: Template, param: Parameterization) -> None:
        self.graph, self.tp, self.param = graph, tp, param
        self.routes = routes(tp, param)

    def D(self, g: str, h: str) -> sympy.Expr:  # noqa: N802 - the theory's name
        # Keyed on the routes, not the names: the taps of a convolution, read through identity
        # maps by the sum of taps, share one backward vector, hence one quantity.
        mine, theirs = tuple(self.routes.get(g, ())), tuple(self.routes.get(h, ()))
        key = ("D", mine, theirs)
        graph = self.graph
        if key in graph.memo:
            return graph.memo[key]
        # Route pairs with the same maps A and functions φ on both sides share one
        # expectation: their inner covariances are summed first (the taps of a convolution).
        inners: dict[tuple, list[sympy.Expr]] = defaultdict(list)
        for r in mine:
            for s in theirs:
                c = gaussian_cov(graph, r.gaussian, s.gaussian, self.D)
                if c == 0:
                    continue
                inner_shape = (r.B.shape[1], s.B.shape[1])
                inners[r.A, r.phi, s.A, s.phi].append(mapped(graph, c, inner_shape, r.B, s.B))
        terms = []
        for (a, phi, b, psi), parts in inners.items():
            weighted = graph.expect(phi, psi) * sympy.Add(*parts)
            if weighted != 0:
                shape = (a.shape[0], b.shape[0])
                terms.append(mapped(graph, weighted, shape, a.T, b.T))
        return graph.node(key, sympy.Add(*terms), f"D({g}, {h})")


def _unmapped(
    graph: KernelGraph, d: sympy.Expr, factor: sympy.Expr, shape: tuple[int, int]
) -> list[tuple[sympy.Expr, tuple[int, int], sympy.Expr]]:
    """Σ_ij (A X Bᵀ ⊙ F)_ij = Σ_ij (X ⊙ Aᵀ F B)_ij: the maps of a backward quantity moved onto
    the forward factor, term by term of a sum, so that the taps of a convolution meet one
    backward quantity X (and their mapped factors are the forward pass's own quantities)."""
    node = graph.nodes[d.node].formula if isinstance(d, Ref) and d.side == "X" else None
    if isinstance(node, sympy.Add) and all(isinstance(t, Ref) for t in node.args):
        return [part for t in node.args for part in _unmapped(graph, t, factor, shape)]
    if not isinstance(node, Mapped):
        return [(d, shape, factor)]
    left = None if node.left is None else node.left.T
    right = None if node.right is None else node.right.T
    return [(node.inner, node.shape, mapped(graph, factor, shape, left, right))]


def analyse_template(
    tp: Template, options: NumericOptions | None = None, param: Parameterization = NTK
) -> tuple[KernelGraph, sympy.Expr, sympy.Expr]:
    """The kernel graph of a template program with its NNGP and NTK (arrays of one member pair).
    Expectations are closed forms where they exist, else numerical quantities chosen as on the
    scalar path (`kernels/plan.py`), evaluated over member pairs (`codegen/numerics.py`)."""
    program = tp.program
    # the readout Gaussian has a member per output member (a flatten readout's vectors)
    sizes = {**tp.sizes, READOUT: tp.sizes[program.outputs[0]]}
    graph = KernelGraph(program, expect, options or NumericOptions(), param, sizes=sizes)
    nngp_expr = nngp(graph)
    backward = FamilyBackward(graph, tp, param)
    summands = [nngp_expr]
    uses: dict[str, list] = defaultdict(list)
    for ins in program.instrs:
        if isinstance(ins, ir.MatMul | EmbedFamily):
            uses[ins.weight].append(ins)
        elif isinstance(ins, ir.Bias):
            d = backward.D(ins.out, ins.out)
            summands.append(param.ntk_factor(ins.var) * d)
    # Σ over matrices and pairs of uses of var · D ⊙ E[arg arg']: the pairs that share one
    # backward quantity D (the taps of a convolution) are summed inside one total.
    by_d: dict[sympy.Expr, list[sympy.Expr]] = defaultdict(list)
    shapes: dict[sympy.Expr, tuple[int, int]] = {}
    for w, its in uses.items():
        var = param.ntk_factor(program.weight[w].var)
        for a in its:
            for b in its:
                d = backward.D(a.out, b.out)
                if d == 0:
                    continue
                by_d[d].append(var * forward_factor(graph, a, b))
                shapes[d] = (tp.sizes[a.out], tp.sizes[b.out])
    moved: dict[tuple, list[sympy.Expr]] = defaultdict(list)
    for d, factors in by_d.items():
        for inner, shape, factor in _unmapped(graph, d, sympy.Add(*factors), shapes[d]):
            moved[inner, shape].append(factor)
    for (inner, shape), factors in moved.items():
        summands.append(total(graph, inner * sympy.Add(*factors), shape))
    return graph, nngp_expr, sympy.Add(*summands)


__all__ = ["READOUT", "Route", "analyse_template", "routes"]
