"""Reference values of Gaussian expectations by quadrature, for the tests and the benchmarks.

Written from the definitions with NumPy and SciPy only (no tpcompile, no JAX), so that a kernel
computed by tpcompile can be checked against numbers that share no code with it. One
implementation per rule; pick the rule by the smoothness of the integrand:

    rule                      computes                      for
    trapezoid_pair            E[f(u) g(v)]                  f, g analytic in a strip (tanh, silu)
    split_pair                E[f(u) g(v)]                  f, g smooth except at given kinks
    graded_pair               E[f(u) g(v)], zero means      kinks at 0, any correlation in [-1, 1]
    split_mean                E[f(u)]                       1-D, smooth except at given kinks
    adaptive_pair             E[f(u) g(v)]                  cross-check: nested adaptive SciPy
    density_dblquad           E[f(u) g(v)] on a rectangle   cross-check: SciPy over the density
    relu_pair_conditional     E[relu(u - a) relu(v - b)]    cross-check: 1-D adaptive, inner exact

Throughout, (u, v) ~ N((m1, m2), [[s11, s12], [s12, s22]]) and u ~ N(m, s); f and g are
vectorised NumPy functions. The covariance arguments broadcast against each other (one
expectation per entry) unless a docstring says otherwise.

Cholesky coordinates: u = m1 + l11 z1, v = m2 + l21 z1 + l22 z2 with z1, z2 iid N(0, 1),
l11 = sqrt(s11), l21 = s12 / l11, l22 = sqrt(s22 - l21^2) (clipped at 0: |correlation| = 1 gives
l22 = 0, v a function of u). The Gaussian tails beyond |z| = 12 (13 for the trapezoid rule) are
< 1e-32 of the total, far below every tolerance in the suite.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy import integrate
from scipy.stats import norm

Fn = Callable[[np.ndarray], np.ndarray]
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

__all__ = [
    "adaptive_pair",
    "cholesky",
    "density_dblquad",
    "graded_pair",
    "legendre_panels",
    "normal_pdf",
    "relu_pair_conditional",
    "split_mean",
    "split_pair",
    "trapezoid_pair",
]


# --------------------------------------------------------------------------------------------------
# Building blocks


def normal_pdf(z: np.ndarray) -> np.ndarray:
    """The standard normal density."""
    return np.exp(-0.5 * z * z) * INV_SQRT_2PI


def cholesky(s11, s12, s22) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(l11, l21, l22) of [[s11, s12], [s12, s22]], broadcast; l22 clipped at 0 (|c| = 1)."""
    s11, s12, s22 = np.broadcast_arrays(*(np.asarray(s, dtype=np.float64) for s in (s11, s12, s22)))
    l11 = np.sqrt(s11)
    l21 = s12 / l11
    return l11, l21, np.sqrt(np.maximum(s22 - l21**2, 0.0))


@functools.cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return leggauss(n)


def legendre_panels(lo, hi, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights (`nodes` per panel) on the panels [lo[..., j], hi[..., j]],
    flattened over the last axis: arrays of shape lo.shape[:-1] + (lo.shape[-1] * nodes,)."""
    t, w = _legendre(nodes)
    lo = np.asarray(lo, dtype=np.float64)[..., None]
    hi = np.asarray(hi, dtype=np.float64)[..., None]
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    x, wt = mid + half * t, half * w
    return x.reshape(*x.shape[:-2], -1), wt.reshape(*wt.shape[:-2], -1)


def _composite(cuts: np.ndarray, panels: int, nodes: int, zmax: float):
    """Nodes and weights (standard normal density included) of composite Gauss-Legendre on
    [-zmax, zmax]: `panels` equal panels, each entry's panel containing its cut split there.
    cuts: (E,) (NaN for no cut); returns (E, (panels + 1) nodes) arrays."""
    uniform = np.broadcast_to(np.linspace(-zmax, zmax, panels + 1), (len(cuts), panels + 1))
    extra = np.where(np.isnan(cuts), zmax, np.clip(cuts, -zmax, zmax))[:, None]
    edges = np.sort(np.concatenate([uniform, extra], axis=1), axis=1)  # a no-cut adds width 0
    z, w = legendre_panels(edges[:, :-1], edges[:, 1:], nodes)
    return z, w * normal_pdf(z)


def _entries(*arrays) -> tuple[tuple[int, ...], list[np.ndarray]]:
    b = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    return b[0].shape, [a.ravel() for a in b]


def _shaped(out: np.ndarray, shape: tuple[int, ...]):
    """Back to the broadcast shape; a NumPy float for scalar arguments."""
    return out.reshape(shape)[()]


# --------------------------------------------------------------------------------------------------
# Smooth integrands: the trapezoid rule


def trapezoid_pair(
    f: Fn, g: Fn, s11, s12, s22, m1=0.0, m2=0.0, h: float = 0.05, zmax: float = 13.0
):
    """E[f(u) g(v)] by the tensor trapezoid rule in Cholesky coordinates, step h on [-zmax, zmax]^2.

    For integrands analytic in a strip |Im z| < a around the real axis (tanh, sigmoid, softplus,
    silu and their derivatives, shifted and scaled), the trapezoid rule for the Gaussian weight
    converges geometrically, with error ~exp(-2 pi a / h) (THEORY §6.1): h = 0.05 reaches rounding
    level for the variances of the tests (checked against `adaptive_pair` at 1e-13 in
    test_numerics). Not for kinks: there it is only O(h^2).
    """
    # nodes k h exactly: np.arange(-zmax, zmax, h) steps by fl(-zmax + h) + zmax, which is h only
    # to ~ulp(zmax), and the h-weighted sum would then be off by that relative error (1.4e-14
    # for h = 0.05, zmax = 13)
    n = round(zmax / h)
    z = h * np.arange(-n, n + 1)
    w = h * normal_pdf(z)
    shape, (s11, s12, s22, m1, m2) = _entries(s11, s12, s22, m1, m2)
    l11, l21, l22 = cholesky(s11, s12, s22)
    out = np.zeros_like(s12)
    for z1, w1 in zip(z, w, strict=True):
        out += w1 * f(m1 + l11 * z1) * (g((m2 + l21 * z1)[:, None] + l22[:, None] * z) @ w)
    return _shaped(out, shape)


# --------------------------------------------------------------------------------------------------
# Kinked integrands: Gauss-Legendre split at the kinks


def split_pair(
    f: Fn,
    g: Fn,
    s11,
    s12,
    s22,
    m1=0.0,
    m2=0.0,
    *,
    kink_f: float | None = 0.0,
    kink_g: float | None = 0.0,
    panels: int = 1,
    nodes: int = 160,
    zmax: float = 12.0,
    return_abs: bool = False,
):
    """E[f(u) g(v)] for f smooth except at u = kink_f, g except at v = kink_g (None: smooth),
    by composite Gauss-Legendre in Cholesky coordinates with a breakpoint at every kink.

    Outer axis z1: `panels` equal panels on [-zmax, zmax], the one containing u's kink
    (kink_f - m1)/l11 split there. Inner axis z2, for each outer node: the same, split where v
    crosses kink_g; if l22 = 0 (|correlation| = 1) v is fixed by z1 and the inner value is g(v).
    Every piece is then smooth (for relu, step, relu^k, erf, gelu ... entire), so the rule
    converges geometrically in `nodes`: the closed-form table is checked with one panel of 160
    nodes per side of each kink (reproduces 240 nodes to ~1e-15), the kinked compositions with
    26 panels of 16 nodes. return_abs: also E[|f(u) g(v)|], a scale for absolute tolerances.
    """
    shape, (s11, s12, s22, m1, m2) = _entries(s11, s12, s22, m1, m2)
    l11, l21, l22 = cholesky(s11, s12, s22)
    entries = len(s11)
    no_cut = np.full(entries, np.nan)
    z1, w1 = _composite(no_cut if kink_f is None else (kink_f - m1) / l11, panels, nodes, zmax)
    fw = f(m1[:, None] + l11[:, None] * z1) * w1  # (E, P)
    pos = (l22 > 0)[:, None]
    safe = np.where(pos, l22[:, None], 1.0)
    total, total_abs = np.zeros(entries), np.zeros(entries)
    block = max(1, 100_000 // (entries * (panels + 1) * nodes))  # outer nodes per pass
    for j in range(0, z1.shape[1], block):
        v0 = m2[:, None] + l21[:, None] * z1[:, j : j + block]  # (E, B)
        cut = (
            np.full(v0.shape, np.nan)
            if kink_g is None
            else np.where(pos, (kink_g - v0) / safe, np.nan)
        )
        z2, w2 = _composite(cut.ravel(), panels, nodes, zmax)
        z2, w2 = z2.reshape(*v0.shape, -1), w2.reshape(*v0.shape, -1)
        gv = g(v0[..., None] + l22[:, None, None] * z2)
        inner = np.where(pos, np.sum(w2 * gv, axis=-1), g(v0))
        total += np.sum(fw[:, j : j + block] * inner, axis=1)
        if return_abs:
            inner_abs = np.where(pos, np.sum(w2 * np.abs(gv), axis=-1), np.abs(g(v0)))
            total_abs += np.sum(np.abs(fw[:, j : j + block]) * inner_abs, axis=1)
    if return_abs:
        return _shaped(total, shape), _shaped(total_abs, shape)
    return _shaped(total, shape)


def graded_pair(
    f: Fn,
    g: Fn,
    s11,
    s12,
    s22,
    nodes: int = 32,
    panels: int = 20,
    zmax: float = 12.0,
    chunk: int = 8,
):
    """E[f(u) g(v)], zero means, f and g smooth except at 0 (a kink or a jump: relu, step,
    relu * erf), for every covariance: correlations +-1 and zero variances included.

    Condition on u: u = sqrt(s11) z, z ~ N(0, 1), and v | u ~ N(m, tau^2) with m = (s12/s11) u and
    tau^2 = s22 - s12^2/s11 (clipped at 0), so E = E_z[f(u) E_w[g(m + tau w)]].

    * Inner integral over w in [-zmax, zmax]: split at w0 = -m/tau, where g's argument crosses 0,
      each side cut into 4 equal Gauss-Legendre panels. If tau = 0 (correlation +-1) it is g(m).
    * Outer integral over z in [-zmax, zmax]: split at 0 (f's kink), each side cut into `panels`
      geometrically graded panels from 0 out to zmax, the first of width min(delta, 1) with
      delta = tau / |slope * sqrt(s11)|. Near correlation +-1 the inner expectation changes on the
      z-scale delta around z = 0 (it is a smoothed step / kink), which equal panels (as in
      `split_pair`) cannot resolve.
    Processed `chunk` entries at a time. Agrees with the closed forms to 1e-13 .. 1e-15 and with
    SciPy's dblquad to ~1e-15 (test_reference_kernels).
    """
    shape, (s11, s12, s22) = _entries(s11, s12, s22)
    out = np.empty(s11.shape)
    for i in range(0, s11.size, chunk):
        sl = slice(i, i + chunk)
        out[sl] = _graded_flat(f, g, s11[sl], s12[sl], s22[sl], nodes, panels, zmax)
    return _shaped(out, shape)


def _graded_flat(f, g, s11, s12, s22, nodes, panels, zmax):
    a = np.sqrt(s11)
    slope = np.divide(s12, s11, out=np.zeros_like(s12), where=s11 > 0)
    tau = np.sqrt(np.maximum(s22 - slope * s12, 0.0))
    rate = np.abs(slope) * a  # dm/dz
    delta = np.divide(tau, rate, out=np.ones_like(tau), where=rate > 0)
    e1 = np.clip(delta, 1e-14, 1.0)
    j = np.arange(panels - 1) / (panels - 2)
    geo = e1[:, None] * (zmax / e1[:, None]) ** j[None, :]  # e1 .. zmax
    edges = np.concatenate([np.zeros((len(a), 1)), geo], axis=1)
    zp, wp = legendre_panels(edges[:, :-1], edges[:, 1:], nodes)
    z = np.concatenate([-zp, zp], axis=1)  # (E, Z)
    wz = np.concatenate([wp, wp], axis=1) * normal_pdf(z)
    u = a[:, None] * z
    m = slope[:, None] * u
    tpos = tau > 0
    safe_tau = np.where(tpos, tau, 1.0)[:, None]
    w0 = np.clip(-m / safe_tau, -zmax, zmax)
    frac = np.linspace(0.0, 1.0, 5)
    left = -zmax + (w0[..., None] + zmax) * frac  # (E, Z, 5) edges of 4 panels
    right = w0[..., None] + (zmax - w0[..., None]) * frac
    wl, wwl = legendre_panels(left[..., :-1], left[..., 1:], nodes)
    wr, wwr = legendre_panels(right[..., :-1], right[..., 1:], nodes)
    w = np.concatenate([wl, wr], axis=-1)
    ww = np.concatenate([wwl, wwr], axis=-1) * normal_pdf(w)
    inner_q = np.sum(ww * g(m[..., None] + safe_tau[..., None] * w), axis=-1)
    inner = np.where(tpos[:, None], inner_q, g(m))
    return np.sum(wz * f(u) * inner, axis=-1)


def split_mean(
    f: Fn, s, m=0.0, *, kinks: Sequence[float] = (0.0,), nodes: int = 160, zmax: float = 12.0
):
    """E[f(u)], u ~ N(m, s), s > 0, f smooth except at `kinks`: Gauss-Legendre with `nodes` nodes
    on each piece of [-zmax, zmax] between the kinks' standard scores (geometric convergence, as
    `split_pair`). E[f(u) g(r u)] (a pair at |correlation| = 1) is split_mean of u -> f(u) g(r u),
    with the kinks of both factors."""
    shape, (s, m) = _entries(s, m)
    sd = np.sqrt(s)
    cuts = [np.clip((k - m) / sd, -zmax, zmax) for k in kinks]
    edges = np.sort(np.stack([np.full_like(s, -zmax), *cuts, np.full_like(s, zmax)], 1), axis=1)
    z, w = legendre_panels(edges[:, :-1], edges[:, 1:], nodes)
    return _shaped(np.sum(w * normal_pdf(z) * f(m[:, None] + sd[:, None] * z), axis=1), shape)


# --------------------------------------------------------------------------------------------------
# Adaptive SciPy cross-checks of the rules above (slow; a few entries at a time)


def adaptive_pair(
    f: Fn,
    g: Fn,
    s11,
    s12,
    s22,
    m1=0.0,
    m2=0.0,
    *,
    kink_f: float | None = None,
    kink_g: float | None = None,
    zmax: float = 13.0,
    epsabs: float = 1e-15,
    epsrel: float = 1e-14,
):
    """E[f(u) g(v)] by nested adaptive Gauss-Kronrod (scipy `quad_vec`) in Cholesky coordinates,
    to the requested absolute/relative error; kinks, if given, are breakpoints of the outer
    (z1 where u = kink_f) and inner (z2 where v = kink_g) integrals. Without kinks all entries are
    integrated together (`norm="max"`: every entry meets the tolerance); with kinks, whose
    breakpoints differ per entry, one entry at a time. Needs l22 > 0 where kink_g is given."""
    shape, (s11, s12, s22, m1, m2) = _entries(s11, s12, s22, m1, m2)
    if kink_f is None and kink_g is None:
        return _shaped(
            _adaptive(f, g, s11, s12, s22, m1, m2, None, None, zmax, epsabs, epsrel), shape
        )
    out = np.array(
        [
            _adaptive(
                f,
                g,
                *(np.array([a[i]]) for a in (s11, s12, s22, m1, m2)),
                kink_f,
                kink_g,
                zmax,
                epsabs,
                epsrel,
            )[0]
            for i in range(s11.size)
        ]
    )
    return _shaped(out, shape)


def _adaptive(f, g, s11, s12, s22, m1, m2, kink_f, kink_g, zmax, epsabs, epsrel):
    l11, l21, l22 = cholesky(s11, s12, s22)
    opts = dict(epsabs=epsabs, epsrel=epsrel, norm="max", limit=4000)

    def points(cut: float | None) -> dict:
        return {} if cut is None or not -zmax < cut < zmax else {"points": [cut]}

    def inner(z1: float) -> np.ndarray:
        v0 = m2 + l21 * z1
        cut = None if kink_g is None else float((kink_g - v0[0]) / l22[0])
        val, _ = integrate.quad_vec(
            lambda z2: normal_pdf(z2) * g(v0 + l22 * z2), -zmax, zmax, **opts, **points(cut)
        )
        return normal_pdf(z1) * f(m1 + l11 * z1) * val

    cut = None if kink_f is None else float((kink_f - m1[0]) / l11[0])
    return integrate.quad_vec(inner, -zmax, zmax, **opts, **points(cut))[0]


def density_dblquad(
    f: Callable[[float], float],
    g: Callable[[float], float],
    s11: float,
    s12: float,
    s22: float,
    lo: float,
    hi: float,
    epsabs: float,
    epsrel: float,
) -> float:
    """The integral of f(u) g(v) p(u, v) over the square [lo, hi]^2 (hi may be inf), p the
    zero-mean bivariate normal density with det(S) > 0, by scipy's adaptive `dblquad` directly in
    (u, v): no change of variables, so independent of the Cholesky-based rules. For f, g that
    vanish off the square (relu-like functions on the positive quadrant) this is E[f(u) g(v)].
    Scalar covariances."""
    det = s11 * s22 - s12 * s12
    scale = 1.0 / (2.0 * math.pi * math.sqrt(det))

    def integrand(v: float, u: float) -> float:
        quad = (s22 * u * u - 2.0 * s12 * u * v + s11 * v * v) / det
        return f(u) * g(v) * scale * math.exp(-quad / 2.0)

    return integrate.dblquad(integrand, lo, hi, lo, hi, epsabs=epsabs, epsrel=epsrel)[0]


def relu_pair_conditional(
    a: float, b: float, s11: float, s12: float, s22: float, m1: float, m2: float
) -> float:
    """E[relu(u - a) relu(v - b)] by adaptive 1-D quadrature (scipy `quad`) over u's standard
    variable z from u = a upwards, with the conditional expectation of relu(v - b) given z in
    closed form: v | z ~ N(mu, tau^2), E relu = mu Phi(mu/tau) + tau phi(mu/tau). Scalars, s22 >
    s12^2/s11. Accurate to ~1e-15: the integrand is smooth on the integration interval."""
    l11, l21 = math.sqrt(s11), s12 / math.sqrt(s11)
    tau = math.sqrt(s22 - l21**2)

    def integrand(z: float) -> float:
        mu = m2 + l21 * z - b
        inner = mu * norm.cdf(mu / tau) + tau * norm.pdf(mu / tau)
        return norm.pdf(z) * max(m1 + l11 * z - a, 0.0) * inner

    return integrate.quad(integrand, (a - m1) / l11, 13, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
