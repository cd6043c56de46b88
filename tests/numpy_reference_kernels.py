"""NumPy reference, part 2: the infinite-width NNGP/NTK recursions, written from the math
(DESIGN §3, THEORY §3.4, P2 parameterization; see numpy_reference.py): depth-L MLP (two
independent formulations), residual network, Elman RNN (tied or untied, last-state or
mean-pooled readout), and a residual block whose branch is built from its own skip input.
"""

from __future__ import annotations

import numpy as np
from numpy_reference_maps import MAPS, Kernels, V, Vd


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
