"""Stage 3 of the pipeline: the Master Theorem as a demand-driven, memoised graph of kernel
quantities (`KernelGraph`), built from the IR.

Every quantity is a function of a pair of inputs (a, b). It is evaluated in two contexts: the
*cross* context, a from batch 1 and b from batch 2 (arrays N1×N2), and the *diagonal* context,
a = b (arrays of length N, once per batch). A quantity's formula is a sympy expression over
references to other quantities, each tagged with the input pair it is read at:

    X<k>  quantity k at (a, b)       L<k>  quantity k at (a, a)       R<k>  quantity k at (b, b)

so a variance of a left-hand value is an `L` reference and a cross covariance an `X` one. In the
diagonal context all three mean the same thing. Quantities whose formula is a number are never
materialised: structural zeros (independent matrix families, odd functions, backward Gaussians
of different matrices) vanish here, symbolically, before anything is emitted.

Forward (NNGP): Cov of G values by the Master Theorem rules; E[F(a) F'(b)] of functions of G
values by linearity, factorisation over independent sources, Isserlis (with means), the closed-form
table (`closed_forms`), else a labelled numerical rule (`NumericSpec`, evaluated by `runtime`).
Backward (NTK): every backward vector is linear in backward Gaussians (the readout v and one
Ŵᵀdg per matmul use, independent of the forward pass by gradient independence), with forward
functions as coefficients; their covariances follow the same memoised recursion.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import sympy

from . import ir
from .closed_forms import S11, S12, S22, U, V, mean_expectation, pair_expectation
from .errors import TPError
from .numerics import (
    FunctionInfo,
    NumericOptions,
    NumericSpec,
    describe,
    is_smooth,
    multi_method,
    pair_method,
)

Ref = sympy.Symbol


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


@dataclass
class Node:
    id: int
    label: str
    formula: sympy.Expr | ClosedForm | NumericSpec | DataGram
    diagonal_only: bool = False


def side_symbol(side: str, k: int) -> Ref:
    return sympy.Symbol(f"{side}{k}")


def parse_ref(sym: sympy.Symbol) -> tuple[str, int] | None:
    name = sym.name
    if name[:1] in ("X", "L", "R") and name[1:].isdigit():
        return name[0], int(name[1:])
    return None


def refs(expr: object) -> set[tuple[str, int]]:
    """The (side, node) references inside a formula."""
    if isinstance(expr, NumericSpec):
        parts = expr.expressions()
    elif isinstance(expr, ClosedForm):
        parts = list(expr.args)
    elif isinstance(expr, sympy.Basic):
        parts = [expr]
    else:
        parts = []
    out = set()
    for part in parts:
        for s in part.free_symbols:
            r = parse_ref(s)
            if r:
                out.add(r)
    return out


def to_side(expr: sympy.Expr, side: str) -> sympy.Expr:
    """Read a pair quantity at (a, a) ('L') or (b, b) ('R'): every reference moves there."""
    if not isinstance(expr, sympy.Basic) or expr.is_number:
        return expr
    mapping = {}
    for s in expr.free_symbols:
        r = parse_ref(s)
        if r:
            mapping[s] = side_symbol(side, r[1])
    return expr.xreplace(mapping)


@dataclass
class KernelGraph:
    program: ir.Program
    nodes: list[Node] = field(default_factory=list)
    memo: dict[tuple, sympy.Expr] = field(default_factory=dict)
    options: NumericOptions = field(default_factory=NumericOptions)

    def __post_init__(self) -> None:
        for instr in self.program.instrs:
            if isinstance(instr, ir.Moment | ir.ScalarDef):
                raise TPError(
                    "width averages (avg, layernorm) are not yet supported by the kernel compiler",
                    instr.span,
                    "`tpcompile check` and `tpcompile ir` accept them; kernels come later",
                )
        self._sources: dict[str, frozenset[str]] = {}
        self._backward = _backward_coefficients(self.program)

    # -- node bookkeeping --

    def node(self, key: tuple, formula: object, label: str, diagonal_only: bool = False) -> Ref:
        """Memoise `formula` under `key`; numbers and bare references are returned as they are."""
        if key in self.memo:
            return self.memo[key]
        if isinstance(formula, sympy.Basic):
            formula = sympy.sympify(formula)
            if formula.is_number or (formula.is_Symbol and parse_ref(formula)):
                self.memo[key] = formula
                return formula
        k = len(self.nodes)
        self.nodes.append(Node(k, label, formula, diagonal_only))
        ref = side_symbol("L" if diagonal_only else "X", k)
        self.memo[key] = ref
        return ref

    # -- forward: means, sources, covariances --

    def instr(self, name: str) -> ir.Instr:
        return self.program.by_name[name]

    def mean(self, g: str) -> sympy.Expr:
        ins = self.instr(g)
        if isinstance(ins, ir.Bias):
            return ins.mean
        if isinstance(ins, ir.LinComb):
            return ins.const + sum((c * self.mean(v) for c, v in ins.terms), sympy.Integer(0))
        return sympy.Integer(0)

    def sources(self, g: str) -> frozenset[str]:
        """The independent random families (matrices, biases) a G value is built from."""
        if g not in self._sources:
            ins = self.instr(g)
            if isinstance(ins, ir.MatMul | ir.Embed):
                out = frozenset([ins.weight])
            elif isinstance(ins, ir.Bias):
                out = frozenset([ins.out])
            else:
                assert isinstance(ins, ir.LinComb)
                out = frozenset().union(*(self.sources(v) for _, v in ins.terms))
            self._sources[g] = out
        return self._sources[g]

    def cov(self, g: str, h: str) -> sympy.Expr:
        """Cov(Z^g(a), Z^h(b)) by the Master Theorem's rules."""
        key = ("cov", g, h)
        if key in self.memo:
            return self.memo[key]
        a, b = self.instr(g), self.instr(h)
        if isinstance(a, ir.LinComb):
            formula = sum((c * self.cov(v, h) for c, v in a.terms), sympy.Integer(0))
        elif isinstance(b, ir.LinComb):
            formula = sum((c * self.cov(g, v) for c, v in b.terms), sympy.Integer(0))
        elif isinstance(a, ir.Bias) or isinstance(b, ir.Bias):
            formula = a.var if a.out == b.out else sympy.Integer(0)
        elif isinstance(a, ir.Embed) and isinstance(b, ir.Embed) and a.weight == b.weight:
            formula = self.program.weight[a.weight].var * self.gram(a.position, b.position)
        elif isinstance(a, ir.MatMul) and isinstance(b, ir.MatMul) and a.weight == b.weight:
            second = self.expect(self.function(a.arg), self.function(b.arg))
            formula = self.program.weight[a.weight].var * second
        else:
            formula = sympy.Integer(0)
        return self.node(key, formula, f"Σ({g}, {h})")

    def gram(self, p: int, q: int) -> sympy.Expr:
        """<x_p(a), x_q(b)>/d, a leaf read from the data."""
        text = self.program.input.index_text
        return self.node(("gram", p, q), DataGram(p, q), f"<{text(p)}, {text(q)}>/d")

    def function(self, name: str) -> sympy.Expr:
        """A value as a function of G values: its symbol if G, its composed function if H."""
        ins = self.instr(name)
        return ins.fn if isinstance(ins, ir.Nonlin) else ir.symbol(name)

    # -- forward: expectations of products --

    def expect(self, f: sympy.Expr, g: sympy.Expr) -> sympy.Expr:
        """E[f(Z(a)) g(Z(b))] for functions of G values (numbers allowed on either side)."""
        key = ("E", f, g)
        if key not in self.memo:
            total = sympy.Integer(0)
            for cf, tf in _terms(f):
                for cg, tg in _terms(g):
                    total += cf * cg * self._expect_product(tf, tg)
            self.memo[key] = total
        return self.memo[key]

    def _expect_product(self, f: sympy.Expr, g: sympy.Expr) -> sympy.Expr:
        result = sympy.Integer(1)
        for left, right in self._independent_groups(f, g):
            result *= self._expect_group(left, right)
        return result

    def _independent_groups(
        self, f: sympy.Expr, g: sympy.Expr
    ) -> list[tuple[sympy.Expr, sympy.Expr]]:
        """Split E[Π f_i · Π g_j] into factors over disjoint random families."""
        factors = [("L", x) for x in sympy.Mul.make_args(f) if not x.is_number]
        factors += [("R", x) for x in sympy.Mul.make_args(g) if not x.is_number]
        groups: list[tuple[set[str], list[tuple[str, sympy.Expr]]]] = []
        for side, x in factors:
            src = set().union(*(self.sources(s.name) for s in x.free_symbols))
            merged = [grp for grp in groups if grp[0] & src]
            for grp in merged:
                groups.remove(grp)
                src |= grp[0]
            members = [m for grp in merged for m in grp[1]] + [(side, x)]
            groups.append((src, members))
        return [
            (
                sympy.Mul(*(x for s, x in members if s == "L")),
                sympy.Mul(*(x for s, x in members if s == "R")),
            )
            for _, members in groups
        ]

    def _expect_group(self, f: sympy.Expr, g: sympy.Expr) -> sympy.Expr:
        key = ("group", f, g)
        if key in self.memo:
            return self.memo[key]
        fv = sorted(f.free_symbols, key=lambda s: s.name)
        gv = sorted(g.free_symbols, key=lambda s: s.name)
        means = {s: self.mean(s.name) for s in (*fv, *gv)}
        label = f"E[{ir.format_expr(f)} · {ir.format_expr(g)}']"
        if not gv or not fv:  # a one-sided mean: a diagonal quantity, read at (a,a) or (b,b)
            one, side = (f, "L") if fv else (g, "R")
            mean = self._mean_of(one)
            return self.memo.setdefault(key, to_side(mean, side))
        if _is_polynomial(f) and _is_polynomial(g):
            formula = self._isserlis(
                [("L", s) for s in _expand_powers(f)] + [("R", s) for s in _expand_powers(g)],
                means,
            )
            return self.node(key, formula, label)
        zero_mean = all(m == 0 for m in means.values())
        if zero_mean and _is_odd(f * g, (*fv, *gv)):
            return self.node(key, sympy.Integer(0), label)
        pieces = [(cf * cg, tf, tg) for cf, tf in _terms(f, True) for cg, tg in _terms(g, True)]
        if len(pieces) > 1 and all(self._exact(tf, tg) for _, tf, tg in pieces):
            # e.g. (g + h)·relu(z) or erf(u)(1 + u): every piece has an exact form.
            return self.memo.setdefault(
                key, sum((c * self._expect_product(tf, tg) for c, tf, tg in pieces), 0)
            )
        if zero_mean and len(fv) == 1 and len(gv) == 1:
            closed = pair_expectation(f.xreplace({fv[0]: U}), g.xreplace({gv[0]: V}), U, V)
            if closed is not None:
                args = (
                    to_side(self.cov(fv[0].name, fv[0].name), "L"),
                    self.cov(fv[0].name, gv[0].name),
                    to_side(self.cov(gv[0].name, gv[0].name), "R"),
                )
                pair = "·".join(
                    ir.format_expr(e.xreplace({x[0]: y}))
                    for e, x, y in ((f, fv, U), (g, gv, V))
                )
                return self.node(key, _closed(closed, args, pair), label)
        return self.node(key, self._numeric(f, g, fv, gv, means), label)

    def _exact(self, f: sympy.Expr, g: sympy.Expr) -> bool:
        """Whether E[f g'] has an exact form (polynomial, parity, table) — no numerics."""
        fv, gv = list(f.free_symbols), list(g.free_symbols)
        if _is_polynomial(f) and _is_polynomial(g):
            return True
        if any(self.mean(v.name) != 0 for v in (*fv, *gv)):
            return False
        if _is_odd(f * g, (*fv, *gv)):
            return True
        if len(fv) > 1 or len(gv) > 1:
            return False
        fu = f.xreplace({fv[0]: U}) if fv else f
        gw = g.xreplace({gv[0]: V}) if gv else g
        if not fv or not gv:
            return mean_expectation(gw if not fv else fu, V if not fv else U) is not None
        return pair_expectation(fu, gw, U, V) is not None

    def _mean_of(self, f: sympy.Expr) -> sympy.Expr:
        """E[f(Z(a))] as a diagonal quantity (references read at (a, a))."""
        key = ("mean", f)
        if key in self.memo:
            return self.memo[key]
        fv = sorted(f.free_symbols, key=lambda s: s.name)
        means = {s: self.mean(s.name) for s in fv}
        label = f"E[{ir.format_expr(f)}]"
        zero_mean = all(m == 0 for m in means.values())
        if _is_polynomial(f):
            formula = self._isserlis([("L", s) for s in _expand_powers(f)], means)
        elif zero_mean and _is_odd(f, fv):
            formula = sympy.Integer(0)
        else:
            closed = None
            if zero_mean and len(fv) == 1:
                closed = mean_expectation(f.xreplace({fv[0]: U}), U)
            if closed is not None:
                args = (to_side(self.cov(fv[0].name, fv[0].name), "L"),)
                formula = _closed(closed, args, ir.format_expr(f.xreplace({fv[0]: U})))
            else:
                formula = self._numeric(f, None, fv, [], means)
        return self.node(key, formula, label, diagonal_only=True)

    def _pair_cov(self, x: tuple[str, sympy.Symbol], y: tuple[str, sympy.Symbol]) -> sympy.Expr:
        (sx, vx), (sy, vy) = x, y
        if sx == sy:
            return to_side(self.cov(vx.name, vy.name), sx)
        left, right = (vx, vy) if sx == "L" else (vy, vx)
        return self.cov(left.name, right.name)

    def _isserlis(
        self, variables: list[tuple[str, sympy.Symbol]], means: dict[sympy.Symbol, sympy.Expr]
    ) -> sympy.Expr:
        """E[Π (μ_i + z_i)] for jointly Gaussian z, by Stein's lemma applied to the first factor:
        E[x · rest] = μ_x E[rest] + Σ_y Cov(x, y) E[rest without y]."""
        if not variables:
            return sympy.Integer(1)
        (first, *rest) = variables
        total = means[first[1]] * self._isserlis(rest, means) if means[first[1]] != 0 else 0
        for i, other in enumerate(rest):
            c = self._pair_cov(first, other)
            if c != 0:
                total += c * self._isserlis(rest[:i] + rest[i + 1 :], means)
        return sympy.expand(total)

    def _numeric(
        self,
        f: sympy.Expr,
        g: sympy.Expr | None,
        fv: list[sympy.Symbol],
        gv: list[sympy.Symbol],
        means: dict[sympy.Symbol, sympy.Expr],
    ) -> NumericSpec:
        """The numerical rule for E[f g'] (or E[f] when g is None), chosen by `numerics`."""
        lvars = tuple(sympy.Symbol(f"u{i}", real=True) for i in range(len(fv)))
        rvars = tuple(sympy.Symbol(f"w{i}", real=True) for i in range(len(gv)))
        tagged = [("L", s) for s in fv] + [("R", s) for s in gv]
        cov = tuple(tuple(self._pair_cov(x, y) for y in tagged) for x in tagged)
        spec = NumericSpec(
            f.xreplace(dict(zip(fv, lvars, strict=True))),
            None if g is None else g.xreplace(dict(zip(gv, rvars, strict=True))),
            lvars,
            rvars,
            cov,
            tuple(means[s] for s in (*fv, *gv)),
            options=self.options,
        )
        if len(fv) == 1 and len(gv) <= 1:
            fi = describe(f, fv[0])
            if g is None:
                method = "mc" if fi.kind == "irregular" or self.options.method == "mc" else "panel"
                return replace(spec, method=method, kinks=(fi.kinks, ()))
            gi = describe(g, gv[0])
            method = pair_method(fi, gi, self.options)
            if method != "mehler":
                return replace(spec, method=method, kinks=(fi.kinks, gi.kinks))
            # A polynomial side has exactly degree + 1 Hermite coefficients: the series ends there.
            degrees = [i.degree for i in (fi, gi) if i.kind == "polynomial"]
            order = min(degrees) + 1 if degrees else None
            coefficients = (self._hermite(f, fv[0], fi, order),
                            to_side(self._hermite(g, gv[0], gi, order), "R"))
            return replace(spec, method="mehler", kinks=(fi.kinks, gi.kinks),
                           coefficients=coefficients, order=order)
        smooth = is_smooth(f) and (g is None or is_smooth(g))
        return replace(spec, method=multi_method(smooth, len(fv) + len(gv), self.options))

    def _hermite(self, f: sympy.Expr, var: sympy.Symbol, info: FunctionInfo,
                 order: int | None) -> sympy.Expr:
        """The per-input Hermite coefficients of f, a function of the G value `var`: a diagonal
        quantity (an L reference), computed once per input and shared by every pair using f."""
        u = sympy.Symbol("u0", real=True)
        spec = NumericSpec(
            f.xreplace({var: u}), None, (u,), (), ((to_side(self.cov(var.name, var.name), "L"),),),
            (self.mean(var.name),), method="coefficients", kinks=(info.kinks, ()), order=order,
            complete=info.kind == "polynomial" and order is not None and info.degree < order,
            options=self.options,
        )
        label = f"H[{ir.format_expr(f)}]" + (f"[:{order}]" if order else "")
        return self.node(("hermite", f, order), spec, label, diagonal_only=True)

    # -- the kernels --

    def nngp(self) -> sympy.Expr:
        out, ro = self.program.output, self.program.readout
        f = self.function(out)
        return ro.var * self.expect(f, f) + ro.bias_var

    def backward_cov(self, g: str, h: str) -> sympy.Expr:
        """E[dZ^g(a) dZ^h(b)] for G values g, h, with dZ = sqrt(n) ∂f/∂Z."""
        # Keyed on the expansions, not the names: a bias and the matmul it is added to share
        # one backward vector, hence one quantity.
        key = ("D", frozenset(self._backward[g].items()), frozenset(self._backward[h].items()))
        if key in self.memo:
            return self.memo[key]
        total = sympy.Integer(0)
        for gauss_g, coef_g in self._backward[g].items():
            for gauss_h, coef_h in self._backward[h].items():
                c = self._gaussian_cov(gauss_g, gauss_h)
                if c != 0:
                    total += self.expect(coef_g, coef_h) * c
        return self.node(key, total, f"D({g}, {h})")

    def _gaussian_cov(self, x: str, y: str) -> sympy.Expr:
        """Cov of two backward Gaussians: the readout v (variance 1) or Ŵᵀdg for a matmul g."""
        if x == "v" or y == "v":
            return sympy.Integer(1 if x == y else 0)
        wx, wy = self.instr(x), self.instr(y)
        if wx.weight != wy.weight:
            return sympy.Integer(0)
        return self.program.weight[wx.weight].var * self.backward_cov(x, y)

    def ntk(self) -> sympy.Expr:
        uses: dict[str, list[ir.Instr]] = defaultdict(list)
        total = self.nngp()  # the readout weights' and readout bias's own contribution
        for ins in self.program.instrs:
            if isinstance(ins, ir.MatMul | ir.Embed):
                uses[ins.weight].append(ins)
            elif isinstance(ins, ir.Bias):
                total += ins.var * self.backward_cov(ins.out, ins.out)
        for w, its in uses.items():
            var = self.program.weight[w].var
            for a in its:
                for b in its:
                    d = self.backward_cov(a.out, b.out)
                    if d == 0:
                        continue
                    if isinstance(a, ir.Embed):
                        fwd = self.gram(a.position, b.position)
                    else:
                        fwd = self.expect(self.function(a.arg), self.function(b.arg))
                    total += var * d * fwd
        return total


# ---- the backward pass, symbolically ------------------------------------------------------------


def _backward_coefficients(program: ir.Program) -> dict[str, dict[str, sympy.Expr]]:
    """For every G value g: dZ^g = Σ_j coef_j · G_j over backward Gaussians G_j ("v" for the
    readout, a matmul's name for its Ŵᵀdg), each coef a function of forward G values."""
    consumed: dict[str, dict[str, sympy.Expr]] = defaultdict(dict)  # value -> {gaussian: coef}
    consumed[program.output]["v"] = sympy.sqrt(program.readout.var)
    lincomb_users: dict[str, list[tuple[sympy.Expr, str]]] = defaultdict(list)
    for ins in program.instrs:
        if isinstance(ins, ir.MatMul):
            consumed[ins.arg][ins.out] = sympy.Integer(1)
        elif isinstance(ins, ir.LinComb):
            for c, v in ins.terms:
                lincomb_users[v].append((c, ins.out))
    grads: dict[str, dict[str, sympy.Expr]] = {}
    for ins in reversed(program.instrs):
        if ins.kind != "G":
            continue
        sym = ir.symbol(ins.out)
        acc: dict[str, sympy.Expr] = defaultdict(lambda: sympy.Integer(0))
        for value, gaussians in consumed.items():
            other = program.by_name[value]
            fn = other.fn if isinstance(other, ir.Nonlin) else ir.symbol(value)
            if sym not in fn.free_symbols:
                continue
            partial = sympy.diff(fn, sym)
            for gauss, c in gaussians.items():
                acc[gauss] += c * partial
        for c, user in lincomb_users[ins.out]:
            for gauss, coef in grads[user].items():
                acc[gauss] += c * coef
        grads[ins.out] = {k: v for k, v in acc.items() if v != 0}
    return grads


# ---- helpers on sympy expressions -------------------------------------------------------------


def _closed(template: sympy.Expr, args: tuple[sympy.Expr, ...], pair: str) -> object:
    """A closed form as a node formula; constants and all-constant arguments fold at once."""
    if template.is_number:
        return template
    if all(sympy.sympify(a).is_number for a in args):
        return ClosedForm(template, args, pair).substituted()
    return ClosedForm(template, args, pair)


def _terms(expr: sympy.Expr, expand: bool = False) -> list[tuple[sympy.Expr, sympy.Expr]]:
    """expr as Σ coefficient · product, coefficients numbers. Products of sums are multiplied
    out only with `expand` (see `_expect_group`)."""
    expr = sympy.sympify(expr)
    expr = sympy.expand(expr) if expand else sympy.expand(expr, deep=False, mul=False)
    out = []
    for term in sympy.Add.make_args(expr):
        factors = sympy.Mul.make_args(term)
        coef = sympy.Mul(*(f for f in factors if f.is_number))  # 2/sqrt(pi), not just 2
        out.append((coef, sympy.Mul(*(f for f in factors if not f.is_number))))
    return [(c, t) for c, t in out if c != 0]


def _is_polynomial(expr: sympy.Expr) -> bool:
    return all(
        x.is_number or x.is_Symbol or (x.is_Pow and x.base.is_Symbol and x.exp.is_Integer
                                       and x.exp >= 0)
        for x in sympy.Mul.make_args(expr)
    )


def _expand_powers(expr: sympy.Expr) -> list[sympy.Symbol]:
    out: list[sympy.Symbol] = []
    for x in sympy.Mul.make_args(expr):
        if x.is_Symbol:
            out.append(x)
        elif x.is_Pow:
            out.extend([x.base] * int(x.exp))
    return out


def _is_odd(expr: sympy.Expr, variables: tuple[sympy.Symbol, ...] | list[sympy.Symbol]) -> bool:
    """True if expr(-z) == -expr(z) symbolically (a conservative test)."""
    flipped = expr.xreplace({v: -v for v in variables})
    return sympy.expand(flipped + expr) == 0
