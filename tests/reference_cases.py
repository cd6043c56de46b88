"""Shared by test_reference_kernels.py (tpcompile against the NumPy references) and
test_numpy_reference.py (the references alone): the tolerances, the comparison helpers, and the
`.tp` programs with the reference arguments that describe the same networks.

Tolerances (relative, with an absolute floor of the same size times max|K|, because an entry near 0
is a sum of terms of the kernel's scale and carries their rounding error):

Tolerances (relative, with an absolute floor of the same size times max|K|, because an entry near 0
is a sum of terms of the kernel's scale and carries their rounding error):

* RTOL = 1e-12 for closed-form kernels: tpcompile and the reference evaluate the same recursion in
  float64 with the same closed forms, so they differ by rounding (~1e-16 per operation) times a
  modest amplification per layer (measured: <= 1e-15 for depth <= 4, ~3e-14 at depth 50).
* RTOL_C1 = 1e-7 for NTK entries of two IDENTICAL inputs when the network contains relu. There the
  correlation is c = 1 and relu's NTK factor (pi - arccos c)/(2 pi) has infinite slope: one ulp of
  c (1 - 1.1e-16) moves arccos c by 1.5e-8. If an implementation computes a per-input variance and
  the pair covariance by different floating-point paths, the step factor is off by ~5e-9 per layer
  (measured with the reference: 3e-9 at depth 1, 1.8e-8 at depth 4, 2e-7 at depth 50). That is not a
  bug, so such entries get RTOL_C1 (RTOL_C1_DEEP at depth 50). The exact-value test keeps 1e-12: one
  input with itself should give c == 1 exactly (THEORY §10, trap 7).
* RTOL_NUMERIC = 1e-6 where tpcompile must fall back to numerical integration (relu(g) * erf(g),
  and the erf(g) + relu(g) mixture if it has no mixed closed form): the accuracy DESIGN §3 asks of
  the smoothness-aware quadrature (trapezoid / conditioning for kinks).
"""

from __future__ import annotations

import textwrap

import numpy as np
import numpy_reference as ref

RTOL = 1e-12
RTOL_C1 = 1e-7
RTOL_C1_DEEP = 2e-6
RTOL_DEEP = 1e-10
RTOL_NUMERIC = 1e-6


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def src(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


_COMPILED: dict = {}


def compiled_kernels(tp, source, x1, x2=None, params=None) -> ref.Kernels:
    """Kernels of `source` (compiled once per (source, params) and reused)."""
    key = (source, tuple(sorted((params or {}).items())))
    if key not in _COMPILED:
        _COMPILED[key] = tp.compile(source, params=params)
    return kernels_of(_COMPILED[key], x1, x2)


def kernels_of(compiled, x1, x2=None) -> ref.Kernels:
    """compiled.kernel_fn(x1, x2) as NumPy arrays, checking shape, float64 dtype, finiteness."""
    k = compiled.kernel_fn(x1, x2, get=("nngp", "ntk"))
    out = ref.Kernels(np.asarray(k.nngp), np.asarray(k.ntk))
    n2 = len(x1) if x2 is None else len(x2)
    for name, K in zip(("nngp", "ntk"), out, strict=True):
        assert K.shape == (len(x1), n2), f"{name} has shape {K.shape}"
        assert K.dtype == np.float64, f"{name} is {K.dtype}; jax_enable_x64 is on"
        assert np.all(np.isfinite(K)), f"{name} has non-finite entries"
    return out


def identical_pairs(x1, x2=None):
    """Mask of kernel entries whose two inputs are bitwise identical."""
    a = np.asarray(x1).reshape(len(x1), -1)
    b = a if x2 is None else np.asarray(x2).reshape(len(x2), -1)
    return np.all(a[:, None, :] == b[None, :, :], axis=-1)


def assert_kernel_close(got, want, *, rtol=RTOL, same=None, rtol_same=None, what=""):
    """|got - want| <= tol * (|want| + max|want|) entrywise, tol = rtol_same on `same` entries."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite entries"
    tol = np.full(want.shape, rtol)
    if same is not None and rtol_same is not None:
        tol = np.where(same, rtol_same, rtol)
    scale = np.max(np.abs(want))
    err = np.abs(got - want) / (np.abs(want) + scale)
    worst = np.unravel_index(np.argmax(err / tol), err.shape)
    assert np.all(err <= tol), (
        f"{what}: worst entry {worst}: got {got[worst]!r}, want {want[worst]!r}, "
        f"relative error {err[worst]:.3e} > {tol[worst]:.1e}"
    )


def assert_kernels_close(got, want, *, relu, x1, x2=None, rtol=RTOL, rtol_same=RTOL_C1, what=""):
    """NNGP to rtol everywhere; NTK to rtol except identical-input entries of relu networks."""
    same = identical_pairs(x1, x2)
    assert_kernel_close(got.nngp, want.nngp, rtol=rtol, what=f"{what} nngp")
    assert_kernel_close(
        got.ntk,
        want.ntk,
        rtol=rtol,
        same=same,
        rtol_same=rtol_same if relu else rtol,
        what=f"{what} ntk",
    )


def inputs(seed, n, *shape):
    """Gaussian rows with norms spread over [0.5, 2] x typical."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape))
    return x * rng.uniform(0.5, 2.0, (n,) + (1,) * len(shape))


def assert_psd(K, what=""):
    K = np.asarray(K)
    np.testing.assert_allclose(K, K.T, rtol=0, atol=1e-12 * np.max(np.abs(K)), err_msg=what)
    eig = np.linalg.eigvalsh(0.5 * (K + K.T))
    assert eig[0] >= -1e-10 * eig[-1], f"{what}: min eigenvalue {eig[0]:.3e}, max {eig[-1]:.3e}"


# --------------------------------------------------------------------------------------------------
# .tp programs
# --------------------------------------------------------------------------------------------------

# DESIGN §4 exact value. Every variance 1, no readout bias; write q = |x|^2/d.
#   layer 1: Sigma^1 = q + 1 (U and b1), Theta^1 = Sigma^1 = q + 1.
#   relu at correlation 1: E[relu(u)^2] = Sigma/2, E[step(u)^2] = 1/2.
#   layer 2: Sigma^2 = E[relu(h1)^2] + 1 = (q + 1)/2 + 1,
#            Theta^2 = Sigma^2 + E[step^2] Theta^1 = (q + 1)/2 + 1 + (q + 1)/2 = q + 2.
#   output:  NNGP = E[relu(h2)^2] = Sigma^2/2 = (q + 1)/4 + 1/2,
#            NTK = NNGP + E[step^2] Theta^2 = (q + 1)/4 + 1/2 + (q + 2)/2 = (3/4) q + 7/4.
EXACT_SRC = src(
    """
    input x
    weight U ~ N(0, 1)
    weight W ~ N(0, 1)
    bias b1 ~ N(0, 1)
    bias b2 ~ N(0, 1)
    h1 = U @ x + b1
    h2 = W @ relu(h1) + b2
    output relu(h2)
    """
)


def mlp_source(phi, *, sw2, sb2, sv2, svb2, deep):
    """The MLP of the brief. `deep` (L >= 2 via params) has the W family and the loop; the L = 1
    program has neither. sb2 None: no bias at all; svb2 None: no readout bias."""
    lines = ["param L = 2" if deep else "param L = 1", f"param sw2 = {sw2!r}"]
    if sb2 is not None:
        lines.append(f"param sb2 = {sb2!r}")
    lines += ["input x", "weight U ~ N(0, sw2)"]
    if deep:
        lines.append("weight W[2..L] ~ N(0, sw2)")
    if sb2 is not None:
        lines.append("bias b[1..L] ~ N(0, sb2)")
    if svb2 is None:
        lines.append(f"readout ~ N(0, {sv2!r})")
    else:
        lines.append(f"readout ~ N(0, {sv2!r}) + N(0, {svb2!r})")
    lines.append("h[1] = U @ x" + (" + b[1]" if sb2 is not None else ""))
    if deep:
        rhs = f"W[l] @ {phi}(h[l-1])" + (" + b[l]" if sb2 is not None else "")
        lines += ["for l in 2..L {", f"    h[l] = {rhs}", "}"]
    lines.append(f"output {phi}(h[L])")
    return "\n".join(lines) + "\n"


MLP_SETTINGS = {
    "sw2=2,sb2=.1": dict(sw2=2.0, sb2=0.1, sv2=1.0, svb2=None),
    "sw2=1,sb2=.5,sv2=.5,svb2=.2": dict(sw2=1.0, sb2=0.5, sv2=0.5, svb2=0.2),
    "sw2=3,nobias,sv2=2": dict(sw2=3.0, sb2=None, sv2=2.0, svb2=None),
}


def mlp_reference(x1, x2, phi, L, *, sw2, sb2, sv2, svb2):
    return ref.mlp_kernels(x1, x2, L=L, phi=phi, sw2=sw2, sb2=sb2 or 0.0, sv2=sv2, svb2=svb2 or 0.0)


def resnet_source(phi, *, su2, sw2, alpha, out_phi):
    out = f"{phi}(h[L])" if out_phi else "h[L]"
    return src(
        f"""
        param L = 2
        param alpha = {alpha!r}
        input x
        weight U ~ N(0, {su2!r})
        weight W[1..L] ~ N(0, {sw2!r})
        h[0] = U @ x
        for l in 1..L {{
            h[l] = h[l-1] + alpha * (W[l] @ {phi}(h[l-1]))
        }}
        output {out}
        """
    )


RESNET_SETTINGS = {
    "relu": dict(su2=1.0, sw2=2.0, alpha=0.7),
    "erf": dict(su2=1.5, sw2=1.0, alpha=0.5),
}

# Elman RNN with THEORY §2.2's numbers: erf, T = 4, d = 3, s_W^2 = 1.5, s_U^2 = 1, s_b^2 = 0.3.
RNN = dict(phi="erf", su2=1.0, sw2=1.5, sb2=0.3, sv2=1.0)
RNN_T, RNN_D = 4, 3
RNN_OUTPUT = {
    "last": "output erf(h[T])",
    "mean": "output mean(erf(h[t]) for t in 1..T)",
}
RNN_TIED_SRC = src(
    """
    param T = 4
    input x[1..T]
    weight U ~ N(0, 1.0)
    weight W ~ N(0, 1.5)
    bias b ~ N(0, 0.3)
    h[1] = U @ x[1] + b
    for t in 2..T {
        h[t] = W @ erf(h[t-1]) + U @ x[t] + b
    }
    """
)
RNN_UNTIED_SRC = src(
    """
    param T = 4
    input x[1..T]
    weight U[1..T] ~ N(0, 1.0)
    weight W[2..T] ~ N(0, 1.5)
    bias b[1..T] ~ N(0, 0.3)
    h[1] = U[1] @ x[1] + b[1]
    for t in 2..T {
        h[t] = W[t] @ erf(h[t-1]) + U[t] @ x[t] + b[t]
    }
    """
)


def rnn_source(tied, readout):
    return (RNN_TIED_SRC if tied else RNN_UNTIED_SRC) + RNN_OUTPUT[readout] + "\n"


# Shared randomness: several uses of the SAME G vector g.
G_HEAD = """
    input x
    weight U ~ N(0, 1.0)
    weight W ~ N(0, 2.0)
    g = W @ relu(U @ x)
"""
G_SRC = src(G_HEAD + "    output g\n")
G_PLUS_G_SRC = src(G_HEAD + "    output g + g\n")
PRODUCT_SRC = src(G_HEAD + "    output relu(g) * erf(g)\n")
SUM_SRC = src(G_HEAD + "    output erf(g) + relu(g)\n")
G_REF = dict(L=2, phi="relu", su2=1.0, sw2=2.0, sb2=0.0)  # mlp_kernels arguments for G_HEAD

BLOCK_SRC = src(
    """
    input x
    weight U ~ N(0, 1.0)
    weight W ~ N(0, 2.0)
    weight V ~ N(0, 1.5)
    bias b ~ N(0, 0.2)
    g = W @ relu(U @ x) + b
    y = V @ relu(g)
    r = y + g
    output relu(r)
    """
)
BLOCK = dict(su2=1.0, sw2=2.0, sb2=0.2, sV2=1.5)
