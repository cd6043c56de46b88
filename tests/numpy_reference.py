"""Independent NumPy (float64) reference kernels for tpcompile's acceptance tests.

Everything here is written from the math (DESIGN.md §3, THEORY.md §3.4 and §5), not from tpcompile,
and imports neither tpcompile nor JAX. Parameterization: P2, the neural-tangents "ntk" convention
that tpcompile uses (DESIGN §3):

* a weight ``W ~ N(0, s2)`` applied to a vector of fan-in m computes ``sqrt(s2/m) * omega @ h`` with
  ``omega`` iid N(0, 1), and ``omega`` is the trained parameter;
* a bias ``b ~ N(0, s2)`` is ``sqrt(s2) * beta`` with ``beta`` trained;
* the readout is ``f = sqrt(sv2/n) * v . y (+ sqrt(svb2) * beta0)``.

Contents:

1. Dual maps ``V(s11, s12, s22) = E[phi(u) psi(v)]`` for (u, v) ~ N(0, [[s11, s12], [s12, s22]]):
   closed forms for relu, step, erf, erf', identity, and erf + relu; a conditioning Gauss-Legendre
   quadrature (:func:`gauss_expectation`) for everything else (relu * erf) and for checking the
   closed forms.
2. Infinite-width NNGP/NTK recursions: depth-L MLP (two independent formulations), residual network,
   Elman RNN (tied or untied, last-state or mean-pooled readout), and a residual block whose branch
   is built from its own skip input.
3. Finite-width networks with manual backprop (init / apply / empirical kernels) for the Monte Carlo
   self-check of every recursion.

Every kernel function takes a batch ``x1`` (N1, ...) and optionally ``x2`` (N2, ...), and returns
``Kernels(nngp, ntk)`` with N1 x N2 arrays (``x2=None`` means ``x2 = x1``). The batches are
stacked and every quantity is computed on the stacked batch, so the per-input variances are, bit
for bit, the diagonal of the pair covariances (THEORY §10, trap 7): identical inputs get
correlation exactly 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.special import erf as _erf

__all__ = [
    "MAPS",
    "Kernels",
    "activation",
    "block_kernels",
    "erf_deriv_map",
    "erf_nngp",
    "erf_plus_relu_deriv_map",
    "erf_plus_relu_nngp",
    "gauss_expectation",
    "identity_deriv_map",
    "identity_nngp",
    "mlp_kernels",
    "mlp_kernels_backward",
    "relu_erf_deriv_map",
    "relu_erf_nngp",
    "relu_nngp",
    "resnet_kernels",
    "rnn_kernels",
    "step_map",
]

SQRT_PI = math.sqrt(math.pi)


class Kernels(NamedTuple):
    nngp: np.ndarray
    ntk: np.ndarray


# --------------------------------------------------------------------------------------------------
# 1. Dual maps E[phi(u) psi(v)]
# --------------------------------------------------------------------------------------------------


def _arrays(s11, s12, s22):
    return np.broadcast_arrays(*(np.asarray(s, dtype=np.float64) for s in (s11, s12, s22)))


def _q_cos(s11, s12, s22):
    """q = sqrt(s11 s22) and the correlation c = s12 / q clipped to [-1, 1] (c = 0 where q = 0)."""
    s11, s12, s22 = _arrays(s11, s12, s22)
    q = np.sqrt(s11 * s22)
    pos = q > 0
    c = np.divide(s12, q, out=np.zeros_like(q), where=pos)
    return q, np.clip(c, -1.0, 1.0), pos


def relu_nngp(s11, s12, s22):
    """E[relu(u) relu(v)] = q (sin t + (pi - t) cos t) / (2 pi), t = arccos c (Cho & Saul J1)."""
    q, c, _ = _q_cos(s11, s12, s22)
    t = np.arccos(c)
    return q * (np.sqrt(np.maximum(1.0 - c * c, 0.0)) + (np.pi - t) * c) / (2.0 * np.pi)


def step_map(s11, s12, s22):
    """E[step(u) step(v)] = (pi - arccos c) / (2 pi), step(x) = 1[x > 0]; 0 if a variance is 0.

    This is relu's NTK factor E[relu'(u) relu'(v)]. At a zero variance the variable is identically 0
    and step(0) = 0 (JAX's relu'(0) = 0 as well).
    """
    _, c, pos = _q_cos(s11, s12, s22)
    return np.where(pos, (np.pi - np.arccos(c)) / (2.0 * np.pi), 0.0)


def erf_nngp(s11, s12, s22):
    """E[erf(u) erf(v)] = (2/pi) arcsin(2 s12 / sqrt((1 + 2 s11)(1 + 2 s22))) (Williams 1997)."""
    s11, s12, s22 = _arrays(s11, s12, s22)
    a = 2.0 * s12 / np.sqrt((1.0 + 2.0 * s11) * (1.0 + 2.0 * s22))
    return (2.0 / np.pi) * np.arcsin(np.clip(a, -1.0, 1.0))


def erf_deriv_map(s11, s12, s22):
    """E[erf'(u) erf'(v)] = (4/pi) det(I + 2 Sigma)^(-1/2), erf'(x) = (2/sqrt(pi)) exp(-x^2).

    (4/pi) E[exp(-u^2 - v^2)] is a Gaussian integral; det(I + 2 Sigma) >= 1 + 2 (s11 + s22) > 0, so
    no guard is needed.
    """
    s11, s12, s22 = _arrays(s11, s12, s22)
    det = (1.0 + 2.0 * s11) * (1.0 + 2.0 * s22) - 4.0 * s12 * s12
    return (4.0 / np.pi) / np.sqrt(det)


def identity_nngp(s11, s12, s22):
    return _arrays(s11, s12, s22)[1].copy()


def identity_deriv_map(s11, s12, s22):
    return np.ones_like(_arrays(s11, s12, s22)[1])


def _erf_relu_cross(sa, s12):
    """E[erf(u) relu(v)] with Var u = sa: relu(v) = (v + |v|)/2, E[erf(u)|v|] = 0 by the symmetry
    (u, v) -> (-u, -v), and Stein's lemma gives E[erf(u) v] = s12 E[erf'(u)] = s12 (2/sqrt(pi)) /
    sqrt(1 + 2 sa). Hence s12 / (sqrt(pi) sqrt(1 + 2 sa))."""
    return s12 / (SQRT_PI * np.sqrt(1.0 + 2.0 * sa))


def _erfd_step_cross(sa, sb):
    """E[erf'(u) step(v)] with Var u = sa, Var v = sb: step = (1 + sign)/2, erf' even and sign odd,
    so E = E[erf'(u)] / 2 = 1 / (sqrt(pi) sqrt(1 + 2 sa)); 0 if sb = 0 (step(0) = 0)."""
    return np.where(sb > 0, 1.0 / (SQRT_PI * np.sqrt(1.0 + 2.0 * sa)), 0.0)


def erf_plus_relu_nngp(s11, s12, s22):
    """E[p(u) p(v)] for p = erf + relu: the two diagonal maps plus both cross terms."""
    s11, s12, s22 = _arrays(s11, s12, s22)
    return (
        erf_nngp(s11, s12, s22)
        + relu_nngp(s11, s12, s22)
        + _erf_relu_cross(s11, s12)
        + _erf_relu_cross(s22, s12)
    )


def erf_plus_relu_deriv_map(s11, s12, s22):
    """E[p'(u) p'(v)] for p' = erf' + step."""
    s11, s12, s22 = _arrays(s11, s12, s22)
    return (
        erf_deriv_map(s11, s12, s22)
        + step_map(s11, s12, s22)
        + _erfd_step_cross(s11, s22)
        + _erfd_step_cross(s22, s11)
    )


# Gauss-Legendre nodes on [-1, 1], cached per order.
_GL_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _gl(k: int):
    if k not in _GL_CACHE:
        _GL_CACHE[k] = leggauss(k)
    return _GL_CACHE[k]


def _panels(lo, hi, k):
    """Gauss-Legendre nodes and weights on panels [lo[..., j], hi[..., j]] (k nodes each), flattened
    over the last axis: returns arrays of shape lo.shape[:-1] + (lo.shape[-1] * k,)."""
    t, w = _gl(k)
    lo = np.asarray(lo)[..., None]
    half = 0.5 * (np.asarray(hi)[..., None] - lo)
    x = lo + half * (t + 1.0)
    wt = half * w
    return x.reshape(*x.shape[:-2], -1), wt.reshape(*wt.shape[:-2], -1)


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gauss_expectation(f, g, s11, s12, s22, nodes=32, panels=20, zmax=12.0, chunk=8):
    """E[f(u) g(v)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]]) by 1-D quadrature twice.

    Condition on u: u = sqrt(s11) z, z ~ N(0, 1), and v | u ~ N(m, tau^2) with m = (s12/s11) u and
    tau^2 = s22 - s12^2/s11 (clipped at 0), so E = E_z[f(u) E_w[g(m + tau w)]]. f and g must be
    smooth except at 0 (a kink or a jump, as relu, step, relu * erf), and vectorised.

    * Inner integral over w in [-zmax, zmax]: split at w0 = -m/tau, where g's argument crosses 0,
      each side cut into 4 equal Gauss-Legendre panels. If tau = 0 (correlation +-1) it is g(m).
    * Outer integral over z in [-zmax, zmax]: split at 0 (f's kink), each side cut into `panels`
      geometrically graded panels from 0 out to zmax, the first of width min(delta, 1) with
      delta = tau / |slope * sqrt(s11)|. Near correlation +-1 the inner expectation changes on the
      z-scale delta around z = 0 (it is a smoothed step / kink), which equal panels cannot resolve.
    Entries of s11, s12, s22 broadcast; processed `chunk` entries at a time.
    """
    s11, s12, s22 = _arrays(s11, s12, s22)
    shape = s11.shape
    s11, s12, s22 = s11.ravel(), s12.ravel(), s22.ravel()
    out = np.empty(s11.shape)
    for i in range(0, s11.size, chunk):
        sl = slice(i, i + chunk)
        out[sl] = _gauss_expectation_flat(f, g, s11[sl], s12[sl], s22[sl], nodes, panels, zmax)
    return out.reshape(shape)


def _gauss_expectation_flat(f, g, s11, s12, s22, nodes, panels, zmax):
    a = np.sqrt(s11)
    slope = np.divide(s12, s11, out=np.zeros_like(s12), where=s11 > 0)
    tau = np.sqrt(np.maximum(s22 - slope * s12, 0.0))
    rate = np.abs(slope) * a  # dm/dz
    delta = np.divide(tau, rate, out=np.ones_like(tau), where=rate > 0)
    e1 = np.clip(delta, 1e-14, 1.0)
    j = np.arange(panels - 1) / (panels - 2)
    geo = e1[:, None] * (zmax / e1[:, None]) ** j[None, :]  # e1 .. zmax
    edges = np.concatenate([np.zeros((len(a), 1)), geo], axis=1)
    zp, wp = _panels(edges[:, :-1], edges[:, 1:], nodes)
    z = np.concatenate([-zp, zp], axis=1)  # (E, Z)
    wz = np.concatenate([wp, wp], axis=1) * np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    u = a[:, None] * z
    m = slope[:, None] * u
    tpos = tau > 0
    safe_tau = np.where(tpos, tau, 1.0)[:, None]
    w0 = np.clip(-m / safe_tau, -zmax, zmax)
    frac = np.linspace(0.0, 1.0, 5)
    left = -zmax + (w0[..., None] + zmax) * frac  # (E, Z, 5) edges of 4 panels
    right = w0[..., None] + (zmax - w0[..., None]) * frac
    wl, wwl = _panels(left[..., :-1], left[..., 1:], nodes)
    wr, wwr = _panels(right[..., :-1], right[..., 1:], nodes)
    w = np.concatenate([wl, wr], axis=-1)
    ww = np.concatenate([wwl, wwr], axis=-1) * np.exp(-0.5 * w * w) * _INV_SQRT_2PI
    inner_q = np.sum(ww * g(m[..., None] + safe_tau[..., None] * w), axis=-1)
    inner = np.where(tpos[:, None], inner_q, g(m))
    return np.sum(wz * f(u) * inner, axis=-1)


def _relu(x):
    return np.maximum(x, 0.0)


def _step(x):
    return np.where(np.asarray(x) > 0, 1.0, 0.0)


def _erfd(x):
    return (2.0 / SQRT_PI) * np.exp(-x * x)


def _relu_erf(x):
    return _relu(x) * _erf(x)


def _relu_erf_d(x):
    return _step(x) * _erf(x) + _relu(x) * _erfd(x)


def relu_erf_nngp(s11, s12, s22, **quad):
    """E[psi(u) psi(v)], psi = relu * erf (no closed form: quadrature)."""
    return gauss_expectation(_relu_erf, _relu_erf, s11, s12, s22, **quad)


def relu_erf_deriv_map(s11, s12, s22, **quad):
    """E[psi'(u) psi'(v)], psi' = step * erf + relu * erf'."""
    return gauss_expectation(_relu_erf_d, _relu_erf_d, s11, s12, s22, **quad)


# name -> (NNGP map E[phi phi], NTK factor E[phi' phi'])
MAPS: dict[str, tuple[Callable, Callable]] = {
    "relu": (relu_nngp, step_map),
    "erf": (erf_nngp, erf_deriv_map),
    "id": (identity_nngp, identity_deriv_map),
    "erf_plus_relu": (erf_plus_relu_nngp, erf_plus_relu_deriv_map),
    "relu_erf": (relu_erf_nngp, relu_erf_deriv_map),
}

# name -> (phi, phi') pointwise, for quadrature checks and the finite networks
POINTWISE: dict[str, tuple[Callable, Callable]] = {
    "relu": (_relu, _step),
    "step": (_step, lambda x: np.zeros_like(x)),
    "erf": (_erf, _erfd),
    "erfd": (_erfd, lambda x: -2.0 * x * _erfd(x)),
    "id": (lambda x: x, lambda x: np.ones_like(x)),
    "erf_plus_relu": (lambda x: _erf(x) + _relu(x), lambda x: _erfd(x) + _step(x)),
    "relu_erf": (_relu_erf, _relu_erf_d),
}


def _apply_map(name: str, which: int, K: np.ndarray) -> np.ndarray:
    """Apply a dual map to a symmetric covariance matrix K of a stacked batch: entry (a, b) uses
    (K[a, a], K[a, b], K[b, b]). Evaluated on the upper triangle and mirrored (the maps are
    symmetric under swapping the two variables)."""
    dg = np.diag(K)
    i, j = np.triu_indices(len(K))
    out = np.empty_like(K)
    out[i, j] = MAPS[name][which](dg[i], K[i, j], dg[j])
    out[j, i] = out[i, j]
    return out


def V(name, K):
    """E[phi(u) phi(v)] over all pairs of a stacked batch with covariance K."""
    return _apply_map(name, 0, K)


def Vd(name, K):
    """E[phi'(u) phi'(v)] over all pairs of a stacked batch with covariance K."""
    return _apply_map(name, 1, K)


# --------------------------------------------------------------------------------------------------
# 2. Infinite-width recursions
# --------------------------------------------------------------------------------------------------


def _stack(x1, x2):
    x1 = np.asarray(x1, dtype=np.float64)
    if x2 is None:
        return x1, slice(0, len(x1)), slice(0, len(x1))
    x2 = np.asarray(x2, dtype=np.float64)
    n1 = len(x1)
    return np.concatenate([x1, x2]), slice(0, n1), slice(n1, n1 + len(x2))


def _gram(X):
    """<x_a, x_b> / d for a batch X of shape (M, d)."""
    return X @ X.T / X.shape[-1]


def mlp_kernels(
    x1, x2=None, *, L, phi="relu", sw2, sb2, su2=None, sv2=1.0, svb2=0.0, out=None
) -> Kernels:
    """Depth-L MLP, forward (Jacot / neural-tangents) recursion in P2.

    Program (phi = relu or erf; out defaults to phi, "id" means ``output h[L]``)::

        weight U ~ N(0, su2)          # su2 defaults to sw2
        weight W[2..L] ~ N(0, sw2)
        bias b[1..L] ~ N(0, sb2)      # sb2 = 0 is the same kernel as no bias
        readout ~ N(0, sv2) + N(0, svb2)
        h[1] = U @ x + b[1]
        h[l] = W[l] @ phi(h[l-1]) + b[l]      (l = 2..L)
        output out(h[L])

    Sigma^1 = su2 <x, x'>/d + sb2, Theta^1 = Sigma^1;
    Sigma^l = sw2 V_phi(Sigma^{l-1}) + sb2,
    Theta^l = Sigma^l + sw2 V_phi'(Sigma^{l-1}) * Theta^{l-1};
    NNGP = sv2 V_out(Sigma^L) + svb2, NTK = NNGP + sv2 V_out'(Sigma^L) * Theta^L.
    """
    su2 = sw2 if su2 is None else su2
    out = phi if out is None else out
    X, r1, r2 = _stack(x1, x2)
    sig = su2 * _gram(X) + sb2
    theta = sig
    for _ in range(2, L + 1):
        sig_next = sw2 * V(phi, sig) + sb2
        theta = sig_next + sw2 * Vd(phi, sig) * theta
        sig = sig_next
    nngp = sv2 * V(out, sig) + svb2
    ntk = nngp + sv2 * Vd(out, sig) * theta
    return Kernels(nngp[r1, r2], ntk[r1, r2])


def mlp_kernels_backward(
    x1, x2=None, *, L, phi="relu", sw2, sb2, su2=None, sv2=1.0, svb2=0.0, out=None
) -> Kernels:
    """The same MLP as :func:`mlp_kernels`, by the Tensor-Programs decomposition instead (THEORY
    §3.4(a), P2 factors): forward C's, then a backward pass of D's, then the NTK as a sum over the
    parameters of (variance) x D(output of the use) x C(input of the use).

    C^0 = <x, x'>/d; Sigma^l = s2_l C^{l-1} + sb2 (s2_1 = su2, else sw2); C^l = V_phi(Sigma^l).
    D(h^L) = sv2 V_out'(Sigma^L); D(h^{l-1}) = V_phi'(Sigma^{l-1}) * sw2 * D(h^l).
    NTK = sv2 V_out(Sigma^L) + svb2 + sum_l [s2_l D(h^l) C^{l-1} + sb2 D(h^l)].
    """
    su2 = sw2 if su2 is None else su2
    out = phi if out is None else out
    X, r1, r2 = _stack(x1, x2)
    C = [_gram(X)]
    sig = []
    s2 = [None] + [su2] + [sw2] * (L - 1)
    for l in range(1, L + 1):
        sig.append(s2[l] * C[l - 1] + sb2)
        C.append(V(phi, sig[-1]))
    # sig[l-1] is Sigma^l
    nngp = sv2 * V(out, sig[L - 1]) + svb2
    D = sv2 * Vd(out, sig[L - 1])  # D(h^L)
    ntk = nngp.copy()
    for l in range(L, 0, -1):
        ntk = ntk + s2[l] * D * C[l - 1] + sb2 * D
        if l > 1:
            D = Vd(phi, sig[l - 2]) * sw2 * D  # D(h^{l-1})
    return Kernels(nngp[r1, r2], ntk[r1, r2])


def resnet_kernels(x1, x2=None, *, L, alpha, phi="relu", su2, sw2, sv2=1.0, out="id") -> Kernels:
    """Residual network (THEORY §3.4(c)) in P2. Program::

        weight U ~ N(0, su2)
        weight W[1..L] ~ N(0, sw2)
        h[0] = U @ x
        h[l] = h[l-1] + alpha * (W[l] @ phi(h[l-1]))     (l = 1..L)
        output out(h[L])             # out = "id" (output h[L]) or a nonlinearity

    The branch g^l = W^l phi(h^{l-1}) is independent of h^{l-1} (a fresh matrix), so
    K^0 = su2 <x, x'>/d, K^l = K^{l-1} + alpha^2 sw2 V_phi(K^{l-1}).
    Backward (GIA: the cross terms have a fresh zero-mean W^T factor and vanish):
    D^L = sv2 V_out'(K^L), D^{l-1} = D^l (1 + alpha^2 sw2 V_phi'(K^{l-1})).
    NTK = sv2 V_out(K^L) + sum_l sw2 alpha^2 D^l V_phi(K^{l-1}) + su2 D^0 <x, x'>/d.
    """
    X, r1, r2 = _stack(x1, x2)
    G = _gram(X)
    K = [su2 * G]
    for _ in range(L):
        K.append(K[-1] + alpha**2 * sw2 * V(phi, K[-1]))
    nngp = sv2 * V(out, K[L])
    ntk = nngp.copy()
    D = sv2 * Vd(out, K[L])
    for l in range(L, 0, -1):
        ntk = ntk + sw2 * alpha**2 * D * V(phi, K[l - 1])
        D = D * (1.0 + alpha**2 * sw2 * Vd(phi, K[l - 1]))
    ntk = ntk + su2 * D * G
    return Kernels(nngp[r1, r2], ntk[r1, r2])


def rnn_kernels(
    x1, x2=None, *, phi="erf", su2, sw2, sb2, sv2=1.0, svb2=0.0, tied=True, readout="last"
) -> Kernels:
    """Elman RNN (THEORY §3.4(b)) in P2, s^0 = 0, x of shape (N, T, d). Programs::

        tied:   h[1] = U @ x[1] + b;        h[t] = W @ phi(h[t-1]) + U @ x[t] + b
        untied: h[1] = U[1] @ x[1] + b[1];  h[t] = W[t] @ phi(h[t-1]) + U[t] @ x[t] + b[t]
        readout "last": output phi(h[T]);  "mean": output mean(phi(h[t]) for t in 1..T)

    ``same(t, r)`` says whether steps t and r use the same W / U / b (always if tied, t == r if
    untied). Forward, for all step pairs (t, r) of both inputs, in order of max(t, r):
      Sigma(h^t, h'^r) = same(t, r) [sw2 C(s^{t-1}, s'^{r-1}) [t, r >= 2] + su2 <x^t, x'^r>/d + sb2]
      C(s^t, s'^r) = V_phi(Sigma), Cd(t, r) = V_phi'(Sigma)   (variances from the (t, t) entries)
    Backward, in order of decreasing t and r (c_t = readout weights: delta_{tT} or 1/T):
      D(s^t, s'^r) = sv2 c_t c_r + same(t+1, r+1) sw2 D(h^{t+1}, h'^{r+1}) [t, r < T]
      D(h^t, h'^r) = Cd(t, r) D(s^t, s'^r)
    NNGP = sv2 sum_{t,r} c_t c_r C(s^t, s'^r) + svb2 (the readout v is shared by all steps);
    NTK = NNGP + sum_{t,r: same} D(h^t, h'^r) [sw2 C(s^{t-1}, s'^{r-1}) + su2 <x^t, x'^r>/d + sb2].
    """
    X, r1, r2 = _stack(x1, x2)
    M, T, _ = X.shape

    def same(t, r):
        return tied or t == r

    G = {(t, r): _gram_pair(X[:, t], X[:, r]) for t in range(T) for r in range(T)}
    zero = np.zeros((M, M))
    sig, C, Cd = {}, {}, {}
    for m in range(T):
        pairs = [(t, r) for t in range(T) for r in range(T) if max(t, r) == m]
        for t, r in pairs:
            s = zero
            if same(t, r):
                s = su2 * G[t, r] + sb2
                if t >= 1 and r >= 1:
                    s = s + sw2 * C[t - 1, r - 1]
            sig[t, r] = s
        for t, r in pairs:
            vt = np.diag(sig[t, t])[:, None]
            vr = np.diag(sig[r, r])[None, :]
            C[t, r] = MAPS[phi][0](vt, sig[t, r], vr)
            Cd[t, r] = MAPS[phi][1](vt, sig[t, r], vr)
    if readout == "last":
        c = np.zeros(T)
        c[-1] = 1.0
    elif readout == "mean":
        c = np.full(T, 1.0 / T)
    else:
        raise ValueError(readout)
    nngp = svb2 + sv2 * sum(c[t] * c[r] * C[t, r] for t in range(T) for r in range(T))
    Dh = {}
    for t in range(T - 1, -1, -1):
        for r in range(T - 1, -1, -1):
            ds = sv2 * c[t] * c[r] * np.ones((M, M))
            if t + 1 < T and r + 1 < T and same(t + 1, r + 1):
                ds = ds + sw2 * Dh[t + 1, r + 1]
            Dh[t, r] = Cd[t, r] * ds
    ntk = nngp.copy()
    for t in range(T):
        for r in range(T):
            if not same(t, r):
                continue
            fwd = su2 * G[t, r] + sb2
            if t >= 1 and r >= 1:
                fwd = fwd + sw2 * C[t - 1, r - 1]
            ntk = ntk + Dh[t, r] * fwd
    return Kernels(nngp[r1, r2], ntk[r1, r2])


def _gram_pair(A, B):
    return A @ B.T / A.shape[-1]


def block_kernels(x1, x2=None, *, su2, sw2, sb2, sV2, sv2=1.0) -> Kernels:
    """A residual block whose branch is built from its own skip input. Program::

        weight U ~ N(0, su2); weight W ~ N(0, sw2); weight V ~ N(0, sV2); bias b ~ N(0, sb2)
        g = W @ relu(U @ x) + b
        y = V @ relu(g)
        r = y + g
        output relu(r)

    Forward: y (V family) and g (W family + b) are independent, so Sigma_r = Sigma_g + Sigma_y with
    Sigma_y = sV2 V_relu(Sigma_g). Backward: dr = sqrt(sv2) v relu'(r), dy = dr, dg = dr + relu'(g)
    V^T dy (both paths into g add; the cross term has a fresh zero-mean V^T and vanishes), dh =
    relu'(h) W^T dg:
      D_r = sv2 V_step(Sigma_r); D_g = D_r + sV2 V_step(Sigma_g) D_r; D_h = sw2 V_step(Sigma_h) D_g.
    NTK = sv2 V_relu(Sigma_r) + sV2 D_r V_relu(Sigma_g) + D_g (sw2 V_relu(Sigma_h) + sb2)
          + su2 D_h <x, x'>/d.
    """
    X, r1, r2 = _stack(x1, x2)
    G = _gram(X)
    sh = su2 * G
    sg = sw2 * V("relu", sh) + sb2
    sy = sV2 * V("relu", sg)
    sr = sg + sy
    nngp = sv2 * V("relu", sr)
    Dr = sv2 * Vd("relu", sr)
    Dg = Dr + sV2 * Vd("relu", sg) * Dr
    Dh = sw2 * Vd("relu", sh) * Dg
    ntk = nngp + sV2 * Dr * V("relu", sg) + Dg * (sw2 * V("relu", sh) + sb2) + su2 * Dh * G
    return Kernels(nngp[r1, r2], ntk[r1, r2])


# --------------------------------------------------------------------------------------------------
# 3. Finite-width networks (P2) with manual backprop, for the Monte Carlo self-check
# --------------------------------------------------------------------------------------------------
#
# Each network has ``*_init(rng, n, ...) -> params`` (a dict of float64 arrays, all iid N(0, 1):
# these are the trained parameters), ``*_apply(params, X, xp=np) -> f`` (the scalar output per
# example; ``xp`` may be jax.numpy so that a test can differentiate it), and
# ``*_empirical(params, X) -> Kernels`` with the empirical NNGP (the readout-feature Gram,
# sv2 y.y'/n + svb2) and the empirical NTK (sum over all parameters, readout included, of
# df(x)/dp . df(x')/dp), computed by manual backprop: for a use y = sqrt(s2/m) omega z the omega
# contribution is (s2/m) (delta . delta') (z . z') with delta = df/dy.


def activation(name: str, xp=np):
    """phi for the finite networks; xp = numpy or jax.numpy."""
    if xp is np:
        erf = _erf
    else:  # jax.numpy
        import jax.scipy.special as jss

        erf = jss.erf
    if name == "relu":
        return lambda x: xp.maximum(x, 0.0)
    if name == "erf":
        return erf
    if name == "id":
        return lambda x: x
    if name == "relu_erf":
        return lambda x: xp.maximum(x, 0.0) * erf(x)
    if name == "erf_plus_relu":
        return lambda x: erf(x) + xp.maximum(x, 0.0)
    raise ValueError(name)


def _dact(name: str):
    return POINTWISE[name][1]


def _normal(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32).astype(np.float64)


def mlp_init(rng, n, d, L):
    return {
        "U": _normal(rng, (n, d)),
        "W": [_normal(rng, (n, n)) for _ in range(L - 1)],
        "b": _normal(rng, (L, n)),
        "v": _normal(rng, (n,)),
        "b0": np.asarray(rng.standard_normal()),
    }


def mlp_apply(p, X, *, phi, sw2, sb2, su2=None, sv2=1.0, svb2=0.0, out=None, xp=np):
    su2 = sw2 if su2 is None else su2
    out = phi if out is None else out
    n, d = p["U"].shape
    act = activation(phi, xp)
    h = math.sqrt(su2 / d) * X @ p["U"].T + math.sqrt(sb2) * p["b"][0]
    for l, W in enumerate(p["W"], start=1):
        h = math.sqrt(sw2 / n) * act(h) @ W.T + math.sqrt(sb2) * p["b"][l]
    y = activation(out, xp)(h)
    return math.sqrt(sv2 / n) * y @ p["v"] + math.sqrt(svb2) * p["b0"]


def mlp_empirical(p, X, *, phi, sw2, sb2, su2=None, sv2=1.0, svb2=0.0, out=None) -> Kernels:
    su2 = sw2 if su2 is None else su2
    out = phi if out is None else out
    n, d = p["U"].shape
    act, dact = activation(phi), _dact(phi)
    hs = [math.sqrt(su2 / d) * X @ p["U"].T + math.sqrt(sb2) * p["b"][0]]
    for l, W in enumerate(p["W"], start=1):
        hs.append(math.sqrt(sw2 / n) * act(hs[-1]) @ W.T + math.sqrt(sb2) * p["b"][l])
    y = activation(out)(hs[-1])
    nngp = sv2 / n * y @ y.T + svb2
    ntk = nngp.copy()
    delta = math.sqrt(sv2 / n) * p["v"] * _dact(out)(hs[-1])  # df/dh^L
    for l in range(len(hs) - 1, -1, -1):
        dd = delta @ delta.T
        ntk += sb2 * dd
        if l == 0:
            ntk += su2 / d * dd * (X @ X.T)
        else:
            z = act(hs[l - 1])
            ntk += sw2 / n * dd * (z @ z.T)
            delta = math.sqrt(sw2 / n) * (delta @ p["W"][l - 1]) * dact(hs[l - 1])
    return Kernels(nngp, ntk)


def resnet_init(rng, n, d, L):
    return {
        "U": _normal(rng, (n, d)),
        "W": [_normal(rng, (n, n)) for _ in range(L)],
        "v": _normal(rng, (n,)),
    }


def resnet_apply(p, X, *, alpha, phi, su2, sw2, sv2=1.0, out="id", xp=np):
    n, d = p["U"].shape
    act = activation(phi, xp)
    h = math.sqrt(su2 / d) * X @ p["U"].T
    for W in p["W"]:
        h = h + alpha * math.sqrt(sw2 / n) * act(h) @ W.T
    return math.sqrt(sv2 / n) * activation(out, xp)(h) @ p["v"]


def resnet_empirical(p, X, *, alpha, phi, su2, sw2, sv2=1.0, out="id") -> Kernels:
    n, d = p["U"].shape
    act, dact = activation(phi), _dact(phi)
    hs = [math.sqrt(su2 / d) * X @ p["U"].T]
    for W in p["W"]:
        hs.append(hs[-1] + alpha * math.sqrt(sw2 / n) * act(hs[-1]) @ W.T)
    y = activation(out)(hs[-1])
    nngp = sv2 / n * y @ y.T
    ntk = nngp.copy()
    delta = math.sqrt(sv2 / n) * p["v"] * _dact(out)(hs[-1])  # df/dh^L
    for l in range(len(p["W"]), 0, -1):
        z = act(hs[l - 1])
        dg = alpha * delta  # df/dg^l
        ntk += sw2 / n * (dg @ dg.T) * (z @ z.T)
        delta = delta + math.sqrt(sw2 / n) * (dg @ p["W"][l - 1]) * dact(hs[l - 1])
    ntk += su2 / d * (delta @ delta.T) * (X @ X.T)
    return Kernels(nngp, ntk)


def rnn_init(rng, n, d, T, tied):
    k = 1 if tied else T
    return {
        "U": _normal(rng, (k, n, d)),
        "W": _normal(rng, (1 if tied else T - 1, n, n)),
        "b": _normal(rng, (k, n)),
        "v": _normal(rng, (n,)),
        "b0": np.asarray(rng.standard_normal()),
    }


def _rnn_forward(p, X, *, phi, su2, sw2, sb2, xp=np):
    """Pre-activations h^1..h^T (list of (M, n)). Step t uses U[t], W[t-1] (for t >= 1), b[t] if
    untied (index 0 always if tied)."""
    _, n, d = p["U"].shape
    T = X.shape[1]
    tied = p["U"].shape[0] == 1
    act = activation(phi, xp)
    hs = []
    for t in range(T):
        i = 0 if tied else t
        h = math.sqrt(su2 / d) * X[:, t] @ p["U"][i].T + math.sqrt(sb2) * p["b"][i]
        if t >= 1:
            j = 0 if tied else t - 1
            h = h + math.sqrt(sw2 / n) * act(hs[-1]) @ p["W"][j].T
        hs.append(h)
    return hs


def _readout_weights(T, readout):
    return np.eye(T)[-1] if readout == "last" else np.full(T, 1.0 / T)


def rnn_apply(p, X, *, phi, su2, sw2, sb2, sv2=1.0, svb2=0.0, readout="last", xp=np):
    n = p["v"].shape[0]
    T = X.shape[1]
    c = _readout_weights(T, readout)
    act = activation(phi, xp)
    hs = _rnn_forward(p, X, phi=phi, su2=su2, sw2=sw2, sb2=sb2, xp=xp)
    y = sum(c[t] * act(hs[t]) for t in range(T))
    return math.sqrt(sv2 / n) * y @ p["v"] + math.sqrt(svb2) * p["b0"]


def rnn_empirical(p, X, *, phi, su2, sw2, sb2, sv2=1.0, svb2=0.0, readout="last") -> Kernels:
    _, n, d = p["U"].shape
    T = X.shape[1]
    tied = p["U"].shape[0] == 1
    c = _readout_weights(T, readout)
    act, dact = activation(phi), _dact(phi)
    hs = _rnn_forward(p, X, phi=phi, su2=su2, sw2=sw2, sb2=sb2)
    ss = [act(h) for h in hs]
    y = sum(c[t] * ss[t] for t in range(T))
    nngp = sv2 / n * y @ y.T + svb2
    # backward: df/dh^t
    deltas = [None] * T
    for t in range(T - 1, -1, -1):
        ds = math.sqrt(sv2 / n) * c[t] * np.broadcast_to(p["v"], hs[t].shape)
        if t + 1 < T:
            j = 0 if tied else t
            ds = ds + math.sqrt(sw2 / n) * deltas[t + 1] @ p["W"][j]
        deltas[t] = ds * dact(hs[t])
    ntk = nngp.copy()
    for t in range(T):
        for r in range(T):
            if not tied and t != r:
                continue
            dd = deltas[t] @ deltas[r].T
            ntk += sb2 * dd + su2 / d * dd * (X[:, t] @ X[:, r].T)
            if t >= 1 and r >= 1:
                ntk += sw2 / n * dd * (ss[t - 1] @ ss[r - 1].T)
    return Kernels(nngp, ntk)


def block_init(rng, n, d):
    return {
        "U": _normal(rng, (n, d)),
        "W": _normal(rng, (n, n)),
        "V": _normal(rng, (n, n)),
        "b": _normal(rng, (n,)),
        "v": _normal(rng, (n,)),
    }


def block_apply(p, X, *, su2, sw2, sb2, sV2, sv2=1.0, xp=np):
    n, d = p["U"].shape
    relu = activation("relu", xp)
    h = math.sqrt(su2 / d) * X @ p["U"].T
    g = math.sqrt(sw2 / n) * relu(h) @ p["W"].T + math.sqrt(sb2) * p["b"]
    y = math.sqrt(sV2 / n) * relu(g) @ p["V"].T
    return math.sqrt(sv2 / n) * relu(y + g) @ p["v"]


def block_empirical(p, X, *, su2, sw2, sb2, sV2, sv2=1.0) -> Kernels:
    n, d = p["U"].shape
    h = math.sqrt(su2 / d) * X @ p["U"].T
    zh = _relu(h)
    g = math.sqrt(sw2 / n) * zh @ p["W"].T + math.sqrt(sb2) * p["b"]
    zg = _relu(g)
    r = math.sqrt(sV2 / n) * zg @ p["V"].T + g
    zr = _relu(r)
    nngp = sv2 / n * zr @ zr.T
    dr = math.sqrt(sv2 / n) * p["v"] * _step(r)
    dy = dr
    dg = dr + math.sqrt(sV2 / n) * (dy @ p["V"]) * _step(g)
    dh = math.sqrt(sw2 / n) * (dg @ p["W"]) * _step(h)
    ntk = (
        nngp
        + sV2 / n * (dy @ dy.T) * (zg @ zg.T)
        + sw2 / n * (dg @ dg.T) * (zh @ zh.T)
        + sb2 * (dg @ dg.T)
        + su2 / d * (dh @ dh.T) * (X @ X.T)
    )
    return Kernels(nngp, ntk)
