"""Deterministic quadrature for Gaussian expectations (THEORY.md §6.1, §6.4).

Where this sits in the pipeline: parse -> elaborate -> analyse -> emit -> **run**. The analysis
(`kernels/`, method choice in `kernels/plan.py`) leaves some kernel quantities as Gaussian
expectations without a closed form; the generated module evaluates them through
`tpcompile.runtime`, which re-exports the rules below, the Hermite/Mehler series (`mehler.py`) and
the multi-argument rules (`montecarlo.py`).

Every rule here returns an `Estimate` (value, error): the error is an a-posteriori estimate, the
difference from the same rule at a lower degree. That difference is the error of the *lower* rule,
so for geometrically converging rules it overstates the error of the returned value. The rules:

``quad_mean(f, s, m, kinks=...)``
    E[f(u)], u ~ N(m, s): composite Gauss-Legendre on equal panels of [-13, 13] (in standard units),
    with extra breakpoints at the kinks of f, so every panel integrand is analytic.
``split_pair(f, g, s11, s12, s22, m1, m2, kinks_f=..., kinks_g=..., degree=...)``
    E[f(u) g(v)] for kinked one-variable functions: Cholesky coordinates, the outer axis cut where
    u crosses a kink of f, the inner axis (for each outer node) where v crosses a kink of g.
``hermite_pair(f, g, ..., degree=...)``
    plain 2-D Gauss-Hermite (NT's `ElementwiseNumerical`); kept as a reference rule for tests and
    the benchmark. Its error is not estimated (NaN).
``gauss_mean``, ``gauss_pair``
    the values alone (arrays) of `quad_mean` with a kink at 0 and of the split rule cut at 0.

All functions are traceable, never loop in Python over batch entries, follow the (co)variance
dtype, and give finite values for zero variances and correlations of exactly +-1. Memory is
O(batch x chunk): node axes are scanned in chunks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tpcompile.runtime.basics import (
    Estimate,
    check_degree,
    chunk_size,
    float_dtype,
    hermite_rule,
    legendre,
)
from tpcompile.runtime.guards import safe_div, safe_sqrt

ArrayLike = jax.typing.ArrayLike
Fn = Callable[..., jax.Array]

SPAN = 10.0  # split rules: |z| <= 10 holds all but 1.5e-23 of the standard normal mass
PANEL_SPAN = 13.0  # panel rules also integrate f·He_k: e^{-z^2/4} (not /2) must be negligible
PANELS = 28  # panel width < 1: tanh-like poles at distance pi/(2 sd) stay far in panel units


def standard_cuts(kinks: Sequence[float], mean: jax.Array, scale: jax.Array) -> jax.Array:
    """The standard-normal z where mean + scale·z hits each kink: shape (..., len(kinks)).

    A zero scale (constant argument) puts the cut beyond every span, where it changes nothing."""
    scale = jnp.asarray(scale)
    pos = scale > 0
    cols = [jnp.where(pos, (k - mean) / jnp.where(pos, scale, 1), 2 * PANEL_SPAN) for k in kinks]
    shape = jnp.broadcast_shapes(jnp.shape(mean), scale.shape)
    if not cols:
        return jnp.zeros(shape + (0,), scale.dtype)
    return jnp.stack([jnp.broadcast_to(c, shape) for c in cols], axis=-1)


def pieces(cuts: jax.Array, span: float, panels: int) -> tuple[jax.Array, jax.Array]:
    """Midpoints and half-widths (..., panels + c) of [-span, span] split into equal panels and at
    the `cuts` (..., c). A fixed number of pieces keeps shapes static; a cut falling on an edge or
    outside the span just leaves a piece of zero width."""
    edges = jnp.linspace(-span, span, panels + 1, dtype=cuts.dtype)
    edges = jnp.broadcast_to(edges, cuts.shape[:-1] + edges.shape)
    bps = jnp.sort(jnp.concatenate([edges, jnp.clip(cuts, -span, span)], axis=-1), axis=-1)
    return (bps[..., 1:] + bps[..., :-1]) / 2, (bps[..., 1:] - bps[..., :-1]) / 2


def piece_nodes(
    mid: jax.Array, half: jax.Array, n: int, dtype: np.dtype
) -> tuple[jax.Array, jax.Array]:
    """Nodes z and standard-normal weights of n-point Gauss-Legendre on every piece, flattened to
    shape (..., pieces·n)."""
    t, w = (jnp.asarray(a, dtype) for a in legendre(n))
    z = mid[..., None] + half[..., None] * t
    wz = half[..., None] * w * jnp.exp(-z * z / 2) / float(np.sqrt(2 * np.pi))
    return z.reshape(z.shape[:-2] + (-1,)), wz.reshape(z.shape[:-2] + (-1,))


def panel_rule(
    kinks: Sequence[float], mean: jax.Array, scale: jax.Array, panels: int, n: int
) -> tuple[jax.Array, jax.Array]:
    """The 1-D rule of `quad_mean` and of Hermite coefficients, for u = mean + scale·z."""
    cuts = standard_cuts(kinks, mean, scale)
    mid, half = pieces(cuts, PANEL_SPAN, panels)
    return piece_nodes(mid, half, n, cuts.dtype)


def _mean_core(
    f: Fn, s: jax.Array, m: jax.Array, kinks: tuple[float, ...], panels: int, n: int
) -> jax.Array:
    sd = safe_sqrt(s)
    z, w = panel_rule(kinks, m, sd, panels, n)
    fu = jnp.broadcast_to(jnp.asarray(f(m[..., None] + sd[..., None] * z), s.dtype), z.shape)
    return jnp.sum(w * fu, axis=-1)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("kinks", "panels", "n"))
def _quad_mean(
    f: Fn, s: jax.Array, m: jax.Array, *, kinks: tuple[float, ...], panels: int, n: int
) -> Estimate:
    fine = _mean_core(f, s, m, kinks, panels, n)
    return Estimate(fine, jnp.abs(fine - _mean_core(f, s, m, kinks, panels, n - n // 3)))


def quad_mean(
    f: Fn, s: ArrayLike, m: ArrayLike = 0.0, *, kinks: tuple[float, ...] = (), n: int = 24
) -> Estimate:
    """E[f(u)], u ~ N(m, s) elementwise, with `n` Gauss-Legendre nodes per panel (estimate: the
    same panels with 2n/3 nodes). Accurate to ~1e-14 relative for tanh-like f up to s ~ 16."""
    dtype = float_dtype(s)
    s, m = jnp.asarray(s, dtype), jnp.asarray(m, dtype)
    shape = jnp.broadcast_shapes(s.shape, m.shape)
    s, m = jnp.broadcast_to(s, shape), jnp.broadcast_to(m, shape)
    return _quad_mean(f, s, m, kinks=tuple(float(k) for k in kinks), panels=PANELS, n=int(n))


# ---- two-dimensional rules in Cholesky coordinates ----------------------------------------------


def _cholesky(s11: jax.Array, s12: jax.Array, s22: jax.Array) -> tuple[jax.Array, ...]:
    """u = m1 + l11 z1, v = m2 + l21 z1 + l22 z2. s11 = 0 gives l21 = 0 (u constant, v carries its
    whole variance in z2); l21 is clipped so a correlation rounded past +-1 acts as +-1."""
    l11 = safe_sqrt(s11)
    l21 = safe_div(s12, l11)
    sd2 = safe_sqrt(s22)
    l21 = jnp.clip(l21, -sd2, sd2)
    return l11, l21, safe_sqrt(s22 - l21 * l21)


def _pair_core(
    f: Fn,
    g: Fn,
    s11: jax.Array,
    s12: jax.Array,
    s22: jax.Array,
    m1: jax.Array,
    m2: jax.Array,
    outer: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    inner: Callable[[Fn, jax.Array, jax.Array], jax.Array],
) -> jax.Array:
    """Σ_i w1_i f(u_i) E[g(v) | z1_i]: `outer(m1, l11)` gives the z1 rule (outer..., P), `inner(g,
    v0, l22)` the inner expectation. The z1 axis is scanned: memory O(batch x inner chunk)."""
    shape = jnp.broadcast_shapes(s11.shape, s12.shape, s22.shape, m1.shape, m2.shape)
    l11, l21, l22 = _cholesky(s11, s12, s22)
    outer_shape = jnp.broadcast_shapes(s11.shape, m1.shape)
    l11o, m1o = jnp.broadcast_to(l11, outer_shape), jnp.broadcast_to(m1, outer_shape)
    z1, w1 = outer(m1o, l11o)
    l22 = jnp.broadcast_to(l22, shape)

    def step(acc: jax.Array, node: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        z, w = node
        fu = w * jnp.asarray(f(m1o + l11o * z), acc.dtype)
        return acc + fu * inner(g, m2 + l21 * z, l22), None

    xs = (jnp.moveaxis(z1, -1, 0), jnp.moveaxis(w1, -1, 0))
    out, _ = lax.scan(step, jnp.zeros(shape, s11.dtype), xs)
    return out


def _fixed_inner(z: np.ndarray, w: np.ndarray) -> Callable[[Fn, jax.Array, jax.Array], jax.Array]:
    """E[g(v0 + l22 z2)] by a rule with the same nodes for every entry, in node chunks."""

    def inner(g: Fn, v0: jax.Array, l22: jax.Array) -> jax.Array:
        size = chunk_size(int(np.prod(l22.shape)), 64)
        count = -(-len(z) // size)
        zc = np.zeros(count * size)
        wc = np.zeros(count * size)  # padding nodes have weight 0 at z = 0: finite, no effect
        zc[: len(z)], wc[: len(w)] = z, w
        zs = jnp.asarray(zc.reshape(count, size), l22.dtype)
        ws = jnp.asarray(wc.reshape(count, size), l22.dtype)

        def step(acc: jax.Array, node: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            zj, wj = node
            gv = jnp.asarray(g(v0[..., None] + l22[..., None] * zj), acc.dtype)
            return acc + jnp.sum(wj * jnp.broadcast_to(gv, acc.shape + zj.shape), -1), None

        out, _ = lax.scan(step, jnp.zeros(l22.shape, l22.dtype), (zs, ws))
        return out

    return inner


def _axis_cuts(kinks: tuple[float, ...], mean: jax.Array, scale: jax.Array) -> jax.Array:
    """The cuts of one axis of the split rule; a smooth axis is still halved at z = 0, since one
    piece of `degree` nodes over [-10, 10] resolves steep functions (erf at large variance) much
    worse than two."""
    if kinks:
        return standard_cuts(kinks, mean, scale)
    shape = jnp.broadcast_shapes(jnp.shape(mean), jnp.shape(scale))
    return jnp.zeros(shape + (1,), jnp.result_type(mean, scale))


def _split_inner(
    kinks: tuple[float, ...], n: int
) -> Callable[[Fn, jax.Array, jax.Array], jax.Array]:
    """E[g(v0 + l22 z2)] with z2 cut where v crosses a kink of g: pieces of n Gauss-Legendre
    nodes each, scanned one node index at a time over all pieces."""

    def inner(g: Fn, v0: jax.Array, l22: jax.Array) -> jax.Array:
        mid, half = pieces(_axis_cuts(kinks, v0, l22), SPAN, 1)
        t, w = (jnp.asarray(a, l22.dtype) for a in legendre(n))

        def step(acc: jax.Array, node: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            tj, wj = node
            z = mid + half * tj
            gv = jnp.asarray(g(v0[..., None] + l22[..., None] * z), acc.dtype)
            wz = half * wj * jnp.exp(-z * z / 2) / float(np.sqrt(2 * np.pi))
            return acc + jnp.sum(wz * jnp.broadcast_to(gv, z.shape), -1), None

        out, _ = lax.scan(step, jnp.zeros(l22.shape, l22.dtype), (t, w))
        return out

    return inner


def _split_value(
    f: Fn,
    g: Fn,
    args: tuple[jax.Array, ...],
    kinks_f: tuple[float, ...],
    kinks_g: tuple[float, ...],
    n: int,
) -> jax.Array:
    def outer(m1: jax.Array, l11: jax.Array) -> tuple[jax.Array, jax.Array]:
        mid, half = pieces(_axis_cuts(kinks_f, m1, l11), SPAN, 1)
        return piece_nodes(mid, half, n, l11.dtype)

    return _pair_core(f, g, *args, outer, _split_inner(kinks_g, n))


@functools.partial(
    jax.jit, static_argnums=(0, 1), static_argnames=("kinks_f", "kinks_g", "degree", "estimate")
)
def _split_pair(
    f: Fn,
    g: Fn,
    *args: jax.Array,
    kinks_f: tuple[float, ...],
    kinks_g: tuple[float, ...],
    degree: int,
    estimate: bool,
) -> Estimate:
    fine = _split_value(f, g, args, kinks_f, kinks_g, degree)
    if not estimate:
        return Estimate(fine, jnp.full(fine.shape, jnp.nan, fine.dtype))
    low = degree - max(4, degree // 4)
    return Estimate(fine, jnp.abs(fine - _split_value(f, g, args, kinks_f, kinks_g, low)))


def _pair_args(*xs: ArrayLike) -> tuple[jax.Array, ...]:
    dtype = float_dtype(*xs[:3])
    return tuple(jnp.asarray(x, dtype) for x in xs)


def split_pair(
    f: Fn,
    g: Fn,
    s11: ArrayLike,
    s12: ArrayLike,
    s22: ArrayLike,
    m1: ArrayLike = 0.0,
    m2: ArrayLike = 0.0,
    *,
    kinks_f: tuple[float, ...] = (0.0,),
    kinks_g: tuple[float, ...] = (0.0,),
    degree: int = 64,
    estimate: bool = True,
) -> Estimate:
    """E[f(u) g(v)], (u, v) ~ N((m1, m2), [[s11, s12], [s12, s22]]) elementwise (broadcasting, e.g.
    (N1, 1), (N1, N2), (1, N2) -> (N1, N2)), for f and g smooth between their kinks.

    Each axis of the Cholesky coordinates is cut at the kinks (u-values of f, v-values of g; at
    z = 0 if there are none) and every piece gets `degree` Gauss-Legendre nodes: cost
    ((kinks + 1) degree)^2 evaluations of g per entry (1.56x with the estimate at 3/4 the degree).
    Accuracy: ~1e-13 relative at degree 64 for relu·erf and tanh-like pieces at unit variance;
    the estimate says when it is not."""
    return _split_pair(
        f,
        g,
        *_pair_args(s11, s12, s22, m1, m2),
        kinks_f=tuple(float(k) for k in kinks_f),
        kinks_g=tuple(float(k) for k in kinks_g),
        degree=check_degree(degree),
        estimate=estimate,
    )


@functools.partial(jax.jit, static_argnums=(0, 1), static_argnames=("degree",))
def _hermite_pair(f: Fn, g: Fn, *args: jax.Array, degree: int) -> Estimate:
    z, w = hermite_rule(degree)

    def outer(m1: jax.Array, l11: jax.Array) -> tuple[jax.Array, jax.Array]:
        return (
            jnp.broadcast_to(jnp.asarray(z, l11.dtype), l11.shape + z.shape),
            jnp.broadcast_to(jnp.asarray(w, l11.dtype), l11.shape + z.shape),
        )

    value = _pair_core(f, g, *args, outer, _fixed_inner(z, w))
    return Estimate(value, jnp.full(value.shape, jnp.nan, value.dtype))


def hermite_pair(
    f: Fn,
    g: Fn,
    s11: ArrayLike,
    s12: ArrayLike,
    s22: ArrayLike,
    m1: ArrayLike = 0.0,
    m2: ArrayLike = 0.0,
    *,
    degree: int = 96,
) -> Estimate:
    """E[f(u) g(v)] by degree x degree Gauss-Hermite in Cholesky form (THEORY §6.1): the reference
    rule of the tests and the benchmark. Spectral for entire f, g; slow for tanh-like functions at
    large variance and ~1/degree across kinks. The error is not estimated (NaN)."""
    return _hermite_pair(f, g, *_pair_args(s11, s12, s22, m1, m2), degree=check_degree(degree))


# ---- array conveniences (tests, notebooks) ------------------------------------------------------


def gauss_mean(f: Fn, s: ArrayLike, m: ArrayLike = 0.0) -> jax.Array:
    """E[f(u)], u ~ N(m, s), as an array (kink of f assumed at 0): `quad_mean(...).value`."""
    return quad_mean(f, s, m, kinks=(0.0,)).value


def gauss_pair(
    f: Fn,
    g: Fn,
    s11: ArrayLike,
    s12: ArrayLike,
    s22: ArrayLike,
    m1: ArrayLike = 0.0,
    m2: ArrayLike = 0.0,
    *,
    degree: int = 64,
) -> jax.Array:
    """E[f(u) g(v)] as an array: the split rule cut at u = 0 and v = 0, without an estimate."""
    return split_pair(f, g, s11, s12, s22, m1, m2, degree=degree, estimate=False).value
