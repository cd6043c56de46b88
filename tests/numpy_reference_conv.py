"""NumPy reference, part 3: the CNTK of a convolutional network with global average pooling,
written from the forward recursion (Arora et al. 2019, in P2) over tensors of position pairs.

Independent of tpcompile: it imports neither tpcompile nor JAX, and it propagates the NTK forwards
(Θ_l from Θ_{l-1}), where tpcompile sums backward covariances over matrix uses. The network:

    h1[p] = Σ_o K1[o] @ x[p + o] + b1,     h_l[p] = Σ_o K_l[o] @ φ(h_{l-1}[p + o]) + b_l,
    f = sqrt(sv2/n) v · mean_p φ(h_L[p])                      (readout="gap")
    f = Σ_p sqrt(sv2/(n P)) v_p · φ(h_L[p]), v_p independent   (readout="flatten")

over the positions p of a grid of any number of axes, offsets o of a stencil, circular or zero
padding (a zero-padded tap outside the grid is absent), every tap matrix of variance s2.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy_reference_maps import Kernels, relu_nngp, step_map


def _sources(grid: tuple[int, ...], offset: tuple[int, ...], padding: str) -> np.ndarray:
    """For every flat position p, the flat position p + offset (or -1: absent, zero padding)."""
    out = []
    for point in itertools.product(*(range(n) for n in grid)):
        moved = [i + o for i, o in zip(point, offset, strict=True)]
        if padding == "circular":
            moved = [i % n for i, n in zip(moved, grid, strict=True)]
        elif any(not 0 <= i < n for i, n in zip(moved, grid, strict=True)):
            out.append(-1)
            continue
        out.append(int(np.ravel_multi_index(moved, grid)))
    return np.array(out)


def _stencil(t: np.ndarray, sources: list[np.ndarray]) -> np.ndarray:
    """Σ_o T[..., p + o, q + o] over the taps, absent taps skipped (t: M × M × P × P)."""
    out = np.zeros_like(t)
    for src in sources:
        ok = src >= 0
        mask = np.outer(ok, ok)
        gathered = t[:, :, np.where(ok, src, 0)][:, :, :, np.where(ok, src, 0)]
        out += gathered * mask
    return out


def cnn_gap_kernels(
    x1: np.ndarray,
    x2: np.ndarray | None = None,
    *,
    offsets: list[tuple[int, ...]],
    layers: int,
    padding: str,
    s2: float,
    sb2: float,
    sv2: float = 1.0,
    readout: str = "gap",
) -> Kernels:
    """NNGP and NTK of the relu CNN above; x of shape (N, *grid, d)."""
    x1 = np.asarray(x1, dtype=np.float64)
    xs = x1 if x2 is None else np.concatenate([x1, np.asarray(x2, dtype=np.float64)])
    grid = xs.shape[1:-1]
    flat = xs.reshape(len(xs), -1, xs.shape[-1])
    sources = [_sources(grid, o, padding) for o in offsets]
    gram = np.einsum("apd,bqd->abpq", flat, flat) / flat.shape[-1]
    sigma = s2 * _stencil(gram, sources) + sb2
    theta = sigma.copy()
    for _ in range(layers - 1):
        e, ed = _maps(sigma)
        sigma = s2 * _stencil(e, sources) + sb2
        theta = s2 * _stencil(e + ed * theta, sources) + sb2
    e, ed = _maps(sigma)
    # GAP reads every position pair; independent readout vectors only the pairs (p, p)
    pool = (
        (lambda t: t.mean(axis=(2, 3)))
        if readout == "gap"
        else (lambda t: np.diagonal(t, axis1=2, axis2=3).mean(axis=-1))
    )
    nngp = sv2 * pool(e)
    ntk = nngp + sv2 * pool(ed * theta)
    n1 = len(x1)
    rows, cols = slice(0, n1), slice(0, n1) if x2 is None else slice(n1, None)
    return Kernels(nngp[rows, cols], ntk[rows, cols])


def _maps(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[relu relu'] and E[relu' relu'] at every pair of examples and positions."""
    var = np.einsum("aapp->ap", sigma)
    s11 = var[:, None, :, None]
    s22 = var[None, :, None, :]
    return relu_nngp(s11, sigma, s22), step_map(s11, sigma, s22)
