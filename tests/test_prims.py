"""The nonlinearity records (`tpcompile.prims`): one record is all a new nonlinearity needs.

A dummy primitive, the inverse square root unit isru(x) = x / sqrt(1 + x²) (smooth, odd, no
closed form in the table), is registered for the duration of a test and must flow through every
stage without any other change: the front end (name check, IR spelling), the kernel compiler
(smoothness → Mehler series), the generated JAX (the record's template), the finite network,
and the docs table. Its kernels are checked against an independent NumPy quadrature reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from quadrature_reference import split_pair
from sympy.core.function import ArgumentIndexError

import tpcompile
from tpcompile import prims
from tpcompile.kernels.closed_forms.cases import markdown_table
from tpcompile.kernels.plan import describe
from tpcompile.prims.functions import Relu


class Isru(sympy.Function):
    """x / sqrt(1 + x²); derivative (1 + x²)^(-3/2)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return (1 + self.args[0] ** 2) ** sympy.Rational(-3, 2)

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real


ISRU = prims.Prim(
    "isru",
    "isru(e) = e/sqrt(1 + e**2) (a test record)",
    Isru,
    jax="({0}/jnp.sqrt(1.0 + {0}**2))",
    numpy=lambda x: x / np.sqrt(1 + x * x),
)

PROGRAM = """
input x
weight A ~ N(0, 1.5)
output isru(A @ x)
"""


def _reference_pair(f, g, s11: float, s12: float, s22: float) -> float:
    """E[f(u) g(v)] by the shared reference rule: composite Gauss-Legendre in Cholesky
    coordinates over |z| <= 12, 48 panels of 20 nodes. isru's poles at u = ±i sit at distance
    >= 1/sqrt(s11) ~ 0.8 from the real axis, over 3 panel half-widths, so each panel's rule
    converges like 7^(-40): the reference is exact to rounding (~1e-15), far below the 1e-10
    asserted. (Plain Gauss-Hermite is not: it converges only sub-exponentially for functions
    with poles, 1.4e-9 off at degree 120.)"""
    return float(split_pair(f, g, s11, s12, s22, kink_f=None, kink_g=None, panels=48, nodes=20))


@pytest.fixture()
def isru():
    with prims.temporarily(ISRU) as record:
        yield record


def test_unregistered_name_is_an_error() -> None:
    with pytest.raises(tpcompile.TPError, match="isru"):
        tpcompile.load_program(PROGRAM)


def test_record_flows_through_the_front_end(isru: prims.Prim) -> None:
    program = tpcompile.load_program(PROGRAM)
    assert "isru(" in str(program)
    x = sympy.Symbol("x", real=True)
    assert describe(Isru(x), x).kind == "smooth"
    assert "`isru(e)`" in markdown_table()


def test_record_kernels_match_numpy_reference(isru: prims.Prim) -> None:
    compiled = tpcompile.compile(PROGRAM, tol=1e-12)
    assert "/jnp.sqrt(1.0 + " in compiled.source  # the record's JAX template is what runs
    x = np.random.default_rng(0).normal(size=(3, 4))
    k = compiled.kernel_fn(x)
    phi = ISRU.numpy
    dphi = lambda t: (1 + t * t) ** -1.5  # noqa: E731
    gram = 1.5 * x @ x.T / x.shape[1]
    for i in range(3):
        for j in range(3):
            args = (gram[i, i], gram[i, j], gram[j, j])
            nngp = _reference_pair(phi, phi, *args)
            ntk = nngp + gram[i, j] * _reference_pair(dphi, dphi, *args)
            np.testing.assert_allclose(k.nngp[i, j], nngp, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(k.ntk[i, j], ntk, rtol=1e-10, atol=1e-12)


def test_record_runs_in_the_finite_network(isru: prims.Prim) -> None:
    import jax

    net = tpcompile.compile(PROGRAM).finite(16, data_dim=4)
    params = net.init(jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=(2, 4))
    h = np.sqrt(1.5 / 4) * x @ np.asarray(params["A"]).T
    expected = np.sqrt(1 / 16) * (h / np.sqrt(1 + h * h)) @ np.asarray(params["readout"])
    np.testing.assert_allclose(net.apply(params, x), expected, rtol=1e-12)


def test_registry_lists_every_builtin_once() -> None:
    names = [p.name for p in prims.records()]
    assert len(names) == len(set(names))
    assert prims.by_function(Relu).name == "relu"
    with pytest.raises(ValueError, match="already registered"):
        prims.register(prims.lookup("relu"))


def _sample_arguments(prim: prims.Prim) -> list[tuple[float, ...]]:
    """Points off every kink; a second argument (relu_pow's order, safe_div's denominator) fixed."""
    xs = (-2.3, -0.7, -0.05, 0.4, 1.9)
    extra = {"relu_pow": (3,), "safe_div": (0.7,)}.get(prim.name, ())
    return [(x, *extra) for x in xs]


@pytest.mark.parametrize(
    "prim", [p for p in prims.records() if p.function and p.numpy], ids=lambda p: p.name
)
def test_numpy_reference_matches_sympy(prim: prims.Prim) -> None:
    """Each record's NumPy version (used to locate kinks, and by the tests' quadrature
    references) against sympy's own arbitrary-precision evaluation of its function: the
    references are then independent of the JAX printing they check."""
    for args in _sample_arguments(prim):
        exact_args = (sympy.Integer(a) if isinstance(a, int) else sympy.Float(a, 30) for a in args)
        exact = float(sympy.N(prim.function(*exact_args), 30))
        got = float(prim.numpy(*(np.float64(a) for a in args)))
        # float64 evaluation of elementary functions: a few ulps
        assert got == pytest.approx(exact, rel=1e-14, abs=1e-300), (prim.name, args)
