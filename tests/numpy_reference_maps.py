"""NumPy reference, part 1: dual maps V(s11, s12, s22) = E[phi(u) psi(v)] for
(u, v) ~ N(0, [[s11, s12], [s12, s22]]) (see numpy_reference.py for the whole reference).

Closed forms for relu, step, erf, erf', identity, and erf + relu; relu * erf has none and is
integrated by `quadrature_reference.graded_pair` (conditioning Gauss-Legendre, graded towards
correlation +-1). `MAPS` and `POINTWISE` name them; `V` and `Vd` apply a map to every pair of a
stacked batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from quadrature_reference import graded_pair
from scipy.special import erf as _erf

SQRT_PI = math.sqrt(math.pi)


class Kernels(NamedTuple):
    nngp: np.ndarray
    ntk: np.ndarray


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
    """E[psi(u) psi(v)], psi = relu * erf (no closed form: quadrature_reference.graded_pair)."""
    return graded_pair(_relu_erf, _relu_erf, s11, s12, s22, **quad)


def relu_erf_deriv_map(s11, s12, s22, **quad):
    """E[psi'(u) psi'(v)], psi' = step * erf + relu * erf'."""
    return graded_pair(_relu_erf_d, _relu_erf_d, s11, s12, s22, **quad)


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
