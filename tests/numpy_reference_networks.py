"""NumPy reference, part 3: finite-width networks (P2) with manual backprop, for the Monte Carlo
self-check of every infinite-width recursion (see numpy_reference.py).
"""

from __future__ import annotations

import math

import numpy as np
from numpy_reference_maps import POINTWISE, Kernels, _relu, _step
from scipy.special import erf as _erf

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
