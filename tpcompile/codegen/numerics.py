"""Numerical quantities of the family path, evaluated by the runtime's rules over arrays.

Where this sits: `codegen/tensor.py` evaluates a template program's kernel graph over arrays of
member pairs (P × Q × batch). A quantity with no closed form (`NumericSpec`, its rule chosen by
`kernels/plan.py` exactly as on the scalar path) is evaluated here, eagerly (`codegen/stages.py`
says why), by the same runtime functions that `codegen/module.py` prints calls to: they
broadcast over any batch shape, so one call serves every member pair of a block.

Quantities over one joint law (Monte Carlo, tensor Gauss-Hermite) are grouped into one call, as
on the scalar path (`joint`). A Monte Carlo stream is seeded by the first quantity's node in
the family graph, not in the unrolled one, so the two paths draw different samples (they agree
within the reported standard errors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

import sympy

from tpcompile import runtime as rt
from tpcompile.codegen.jaxprint import jax_function
from tpcompile.kernels.plan import NumericSpec

Read = Callable[[sympy.Expr], Any]
Errors = MutableMapping[int, list[Any]] | None


def _integrand(fn: sympy.Expr, variables: tuple[sympy.Symbol, ...]) -> rt.Integrand:
    return rt.integrand(jax_function(fn, variables))


class NumericRule:
    """The runtime call of one numerical quantity; `read` evaluates a reference expression of
    the pass (an array over member pairs and the batch, or a Hermite expansion)."""

    def __init__(self, node: int, spec: NumericSpec) -> None:
        self.node, self.spec = node, spec
        self.left = None if spec.left is None else _integrand(spec.left, spec.lvars)
        self.right = None if spec.right is None else _integrand(spec.right, spec.rvars)

    def __call__(self, read: Read, errors: Errors) -> Any:
        spec, opts = self.spec, self.spec.options
        kinks_f, kinks_g = spec.kinks
        means = [float(m) for m in spec.means]  # constant means (ir/template.py checks)
        if spec.method == "coefficients":  # per input: an intermediate, not tracked
            return rt.hermite_expansion(
                self.left,
                read(spec.cov[0][0]),
                means[0],
                kinks=kinks_f,
                order=spec.order or None,
                complete=spec.complete,
                tol=opts.tol,
            )
        if spec.method == "mehler":
            a, b = (read(c) for c in spec.coefficients or ())
            s11, s12, s22 = self._pair(read)
            return rt.track(errors, self.node, rt.mehler_pair(a, b, s11, s12, s22, tol=opts.tol))
        if self.law is not None:
            return joint([self], read, errors)[0]
        if spec.right is None:
            assert spec.method == "panel", spec.method
            estimate = rt.quad_mean(self.left, read(spec.cov[0][0]), means[0], kinks=kinks_f)
            return rt.track(errors, self.node, estimate)
        pair = (*self._pair(read), means[0], means[1])
        if spec.method == "split":
            estimate = rt.split_pair(
                self.left,
                self.right,
                *pair,
                kinks_f=kinks_f,
                kinks_g=kinks_g,
                degree=opts.split_degree(),
            )
        else:
            assert spec.method == "hermite", spec.method
            estimate = rt.hermite_pair(self.left, self.right, *pair, degree=opts.hermite_degree())
        return rt.track(errors, self.node, estimate)

    def _pair(self, read: Read) -> tuple[Any, Any, Any]:
        cov = self.spec.cov
        return read(cov[0][0]), read(cov[0][1]), read(cov[1][1])

    @property
    def law(self) -> tuple | None:
        """What quantities over one joint law share (Monte Carlo, tensor Gauss-Hermite), so that
        they are one call of the rule: one compilation and one set of draws, as the scalar
        path's groups; None for the rules of one or two variables."""
        spec = self.spec
        if spec.method not in ("mc", "tensor"):
            return None
        return (spec.method, spec.cov, spec.means, len(spec.lvars), spec.options)


def joint(rules: list[NumericRule], read: Read, errors: Errors) -> list[Any]:
    """The values of quantities over one joint law (`NumericRule.law`), in one call; the Monte
    Carlo stream is the first quantity's node."""
    first = rules[0]
    spec, opts = first.spec, first.spec.options
    entries: dict[sympy.Expr, int] = {}
    pattern = []
    for row in spec.cov:
        out: list[int | float] = []
        for e in row:
            e = sympy.sympify(e)
            out.append(float(e) if e.is_number else entries.setdefault(e, len(entries)))
        pattern.append(tuple(out))
    law = rt.Law(tuple(read(e) for e in entries), tuple(pattern))
    members = tuple((r.left, r.right) for r in rules)
    means = tuple(float(m) for m in spec.means)
    split = len(spec.lvars)
    if spec.method == "tensor":
        degree = opts.tensor_degree(len(spec.lvars) + len(spec.rvars))
        estimates = rt.tensor_group(members, law, means, split=split, degree=degree)
    else:
        seed = (opts.seed, first.node)
        estimates = rt.mc_group(members, law, means, split=split, samples=opts.samples, seed=seed)
    return [rt.track(errors, r.node, e) for r, e in zip(rules, estimates, strict=True)]


def joint_values(
    rules: Mapping[int, NumericRule], nodes: Iterable[int], read: Read, errors: Errors
) -> dict[int, Any]:
    """The values of the quantities among `nodes` over a joint law, one call a law."""
    laws: dict[tuple, list[NumericRule]] = {}
    for k in sorted(nodes):
        rule = rules.get(k)
        if rule is not None and rule.law is not None:
            laws.setdefault(rule.law, []).append(rule)
    out = {}
    for group in laws.values():
        out.update({r.node: v for r, v in zip(group, joint(group, read, errors), strict=True)})
    return out


__all__ = ["NumericRule", "joint", "joint_values"]
