"""Numerical Gaussian expectations for generated kernel code (THEORY.md §6).

Where this sits in the pipeline: parse -> elaborate -> analyse -> **emit**. The analysis reduces
every kernel quantity to exact algebra, closed forms, or a Gaussian expectation that has no closed
form. The emitted JAX module evaluates the last kind by calling the four functions below; it depends
on jax and on this module only. They are therefore written for that caller:

- every function is traceable (usable under ``jax.jit``, ``vmap``, inside ``lax.scan``), runs
  unchanged on CPU and GPU, and never loops in Python over batch entries (kernel grids are arrays of
  shape ``(N1, N2)`` or broadcastable pieces such as ``(N1, 1)`` and ``(1, N2)``);
- the result dtype follows the (co)variance arguments (float32 in, float32 out); means are cast;
- degenerate covariances are normal input, not errors: zero variances (zero inputs, ``s^0 = 0``
  states), correlation exactly +-1 (the kernel diagonal), and singular joint covariances (identical
  inputs) give finite values, never NaN.

Functions
---------
``gauss_mean(f, s, m)``
    E[f(u)], u ~ N(m, s): 1-D probabilists' Gauss-Hermite.
``gauss_pair(f, g, s11, s12, s22, m1, m2)``
    E[f(u) g(v)] for a bivariate normal: tensor Gauss-Hermite in Cholesky form, one node axis
    vectorised and the other scanned, so memory is O(batch x degree).
``mc_pair(f, g, cov_ll, cov_lr, cov_rr, mean_l, mean_r)`` and ``mc_mean(f, cov, mean)``
    Monte Carlo over k- and (k + m)-dimensional Gaussians with common random numbers, antithetic
    pairs and a PSD matrix square root; return (estimate, standard error).

Accuracy of the defaults (measured in float64 against closed forms / a converged trapezoid rule)
--------------------------------------------------------------------------------------------------
``degree=96`` Gauss-Hermite, relative error of E[phi(u) phi(v)] with equal variances s:

    phi       s    c = 0.5   c = 0.99   c = 1
    erf       1    4e-16     4e-16      1e-16
    erf       2    4e-16     7e-12      2e-11
    erf       4    2e-10     2e-7       5e-7
    tanh      1    2e-12     1e-11
    tanh      4    8e-7      5e-6
    softplus  4    3e-15     4e-14
    relu      1    2e-3      6e-5              (kink: ~1/degree; use the closed form)

Entire integrands converge spectrally, but the rate depends on the variance: phi(sqrt(s) z) gets
steeper as s grows, so large pre-activation variances need a higher degree. Integrands analytic
only in a strip (tanh, sigmoid) converge sub-exponentially, slower as s grows. In float32 the
floor is float32 rounding (~1e-7). Cost: degree^2 evaluations of g per kernel entry (a 200 x 200
grid of tanh takes ~0.6 s on 2 CPU cores).

``samples=65536`` Monte Carlo (32768 antithetic pairs): relative standard error ~9e-3 for
E[relu(u) relu(v)] and ~1e-2 for E[tanh(u) tanh(v)] at unit variances and c = 0.5 (8e-3 and 4e-3
at c = 0.99).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["gauss_mean", "gauss_pair", "mc_mean", "mc_pair"]

ArrayLike = jax.typing.ArrayLike

# Contractions below must not run in TF32 on GPUs (JAX's default float32 matmul precision there):
# a 1e-3 relative error in the samples would bias every Monte Carlo kernel entry.
_HIGHEST = lax.Precision.HIGHEST


def _float_dtype(*xs: ArrayLike) -> np.dtype:
    """The floating dtype the computation runs in: the promotion of the (co)variance arguments.

    The weak Python float in the promotion turns integer inputs into the default float dtype while
    leaving float32 / float64 arrays as they are.
    """
    return jnp.result_type(*xs, 1.0)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) whose value and gradient stay finite at x <= 0.

    Variances computed by the kernel recursions can be exactly 0 (zero inputs) or -1e-17 (rounding);
    the inner `where` keeps sqrt away from 0 so reverse-mode autodiff does not produce 0 * inf.
    """
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1)), 0)


@functools.lru_cache(maxsize=32)
def _hermite_rule(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes and weights, weights normalised to sum to 1 (float64).

    With weight exp(-z^2/2) the rule integrates against N(0, 1) directly, E[h(z)] ~ sum w_i h(z_i),
    without the sqrt(2) and 1/sqrt(pi) factors of the physicists' rule. numpy's rule is accurate
    to ~1e-15 up to at least degree 128 (checked against scipy.special.roots_hermitenorm).
    """
    if not isinstance(degree, int | np.integer) or degree < 1:
        raise ValueError(f"degree must be a positive int, got {degree!r}")
    z, w = hermegauss(int(degree))
    return z, w / w.sum()


def _nodes(degree: int, dtype: np.dtype) -> tuple[jax.Array, jax.Array]:
    """The rule as constants of `dtype`, without nodes whose weight underflows in that dtype.

    At degree 96 the outer weights are ~1e-75, which is 0 in float32. Such a node adds nothing, but
    0 * f(z_i) is NaN if f overflows there (exp of a large argument), so it is dropped.
    """
    z, w = _hermite_rule(degree)
    keep = w.astype(dtype) > jnp.finfo(dtype).tiny
    return jnp.asarray(z[keep], dtype), jnp.asarray(w[keep], dtype)


# Builtin nonlinearities have their kinks at 0 of their (Gaussian) argument, and the elaborator
# makes every builtin's argument a single G value, so kinks sit where u = 0 or v = 0. The rules
# below cut each integration axis exactly there: every piece is then analytic and Gauss-Legendre
# converges geometrically, where plain Gauss-Hermite across a kink converges like 1/degree.
_SPAN = 10.0  # |z| <= 10 holds all but 1.5e-23 of the standard normal mass


@functools.cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"degree must be a positive int, got {n!r}")
    return np.polynomial.legendre.leggauss(int(n))


def _split_rule(cut: jax.Array, t: jax.Array, w: jax.Array, upper: bool) -> tuple[jax.Array, ...]:
    """Nodes and standard-normal weights of one piece: [-SPAN, cut] or [cut, SPAN]."""
    c = jnp.clip(cut, -_SPAN, _SPAN)
    lo, hi = (c, _SPAN) if upper else (-_SPAN, c)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    z = mid[..., None] + half[..., None] * t
    return z, half[..., None] * w * jnp.exp(-z * z / 2) / float(np.sqrt(2 * np.pi))


def _cut_rule(cut: jax.Array, n: int, dtype: np.dtype) -> tuple[jax.Array, jax.Array]:
    """A 2n-node rule for E[h(z)], z ~ N(0, 1), exact on each side of z = cut."""
    t, w = (jnp.asarray(a, dtype) for a in _legendre(n))
    z_lo, w_lo = _split_rule(cut, t, w, upper=False)
    z_hi, w_hi = _split_rule(cut, t, w, upper=True)
    return jnp.concatenate([z_lo, z_hi], -1), jnp.concatenate([w_lo, w_hi], -1)


def _kink_point(mean: jax.Array, scale: jax.Array) -> jax.Array:
    """The standardised z where mean + scale z = 0 (0 when the scale vanishes)."""
    pos = scale > 0
    return jnp.where(pos, -mean / jnp.where(pos, scale, 1), 0)


def gauss_mean(
    f: Callable[[jax.Array], jax.Array],
    s: ArrayLike,
    m: ArrayLike = 0.0,
    *,
    degree: int = 96,
) -> jax.Array:
    """E[f(u)], u ~ N(m, s), elementwise over the array `s` (any shape; `m` broadcasts against it).

    `f` is a vectorised jnp callable of one array. Gauss-Legendre on [-10, 10] standard deviations,
    split where u = 0 (`degree` nodes each side). Safe at s = 0 (gives f(m)); slightly negative
    variances from rounding are treated as 0. Memory O(size(s) x degree). Rounding-level accuracy
    for functions smooth on each side of 0 at moderate variance (kinks at 0 included).
    """
    dtype = _float_dtype(s)
    s = jnp.asarray(s, dtype)
    m = jnp.asarray(m, dtype)
    shape = jnp.broadcast_shapes(s.shape, m.shape)
    sd = jnp.broadcast_to(_safe_sqrt(s), shape)
    m = jnp.broadcast_to(m, shape)
    z, w = _cut_rule(_kink_point(m, sd), degree, dtype)
    fu = jnp.broadcast_to(jnp.asarray(f(m[..., None] + sd[..., None] * z), dtype), z.shape)
    # Elementwise product and sum rather than a matmul, which may run in TF32 on a GPU.
    return jnp.sum(w * fu, axis=-1)


def gauss_pair(
    f: Callable[[jax.Array], jax.Array],
    g: Callable[[jax.Array], jax.Array],
    s11: ArrayLike,
    s12: ArrayLike,
    s22: ArrayLike,
    m1: ArrayLike = 0.0,
    m2: ArrayLike = 0.0,
    *,
    degree: int = 64,
) -> jax.Array:
    """E[f(u) g(v)], (u, v) ~ N((m1, m2), [[s11, s12], [s12, s22]]), elementwise.

    The result has the broadcast shape of s11, s12, s22 (and m1, m2), e.g. (N1, 1), (N1, N2),
    (1, N2) -> (N1, N2). In Cholesky form
        u = m1 + L11 z1,  v = m2 + L21 z1 + L22 z2,
        L11 = sqrt(s11),  L21 = s12 / L11,  L22 = sqrt(max(s22 - L21^2, 0)),
    the z1 axis is cut where u = 0 and, for each z1 node, the z2 axis where v = 0; each of the
    four pieces gets `degree` x `degree` Gauss-Legendre nodes. Degenerate cases give finite,
    correct values: s11 = 0 uses L21 = 0, L22 = sqrt(s22); |corr| = 1 gives L22 = 0; L21 is
    clipped to [-sqrt(s22), sqrt(s22)] so a correlation rounded past +-1 acts as +-1.

    f is evaluated once per (entry of the s11 / m1 shape, node) and g once per (entry, node,
    node); the z2 node axis is a `lax.scan`, so memory is O(broadcast size x degree).
    Cost: (2 degree)^2 evaluations of g per entry. Accuracy: ~1e-13 relative for integrands
    analytic on each side of u = 0 and v = 0 at moderate variances (relu·erf, erf, tanh at unit
    variance); slower for tanh-like functions at large variance (poles near the real axis).
    """
    dtype = _float_dtype(s11, s12, s22)
    s11, s12, s22, m1, m2 = (jnp.asarray(x, dtype) for x in (s11, s12, s22, m1, m2))
    shape = jnp.broadcast_shapes(s11.shape, s12.shape, s22.shape, m1.shape, m2.shape)

    l11 = _safe_sqrt(s11)
    pos = s11 > 0
    # s11 = 0: u is the constant m1, independent of v, so v carries all its variance in z2.
    l21 = jnp.where(pos, s12 / jnp.where(pos, l11, 1), 0)
    sd2 = _safe_sqrt(s22)
    l21 = jnp.clip(l21, -sd2, sd2)  # Cauchy-Schwarz; keeps s22 - l21^2 >= 0 up to rounding
    l22 = jnp.broadcast_to(_safe_sqrt(s22 - l21 * l21), shape)

    outer_shape = jnp.broadcast_shapes(s11.shape, m1.shape)
    l11b, m1b = jnp.broadcast_to(l11, outer_shape), jnp.broadcast_to(m1, outer_shape)
    z1, w1 = _cut_rule(_kink_point(m1b, l11b), degree, dtype)  # (outer..., 2D)
    wf = w1 * jnp.broadcast_to(jnp.asarray(f(m1b[..., None] + l11b[..., None] * z1), dtype),
                               z1.shape)
    v_base = m2[..., None] + l21[..., None] * z1  # v at z2 = 0: (shape..., 2D)
    v_base = jnp.broadcast_to(v_base, shape + (z1.shape[-1],))
    cut2 = _kink_point(v_base, jnp.broadcast_to(l22[..., None], v_base.shape))
    t, w = (jnp.asarray(a, dtype) for a in _legendre(degree))

    def add_node(acc: jax.Array, node: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        tj, wj = node
        for upper in (False, True):  # node j of the lower and of the upper piece of the z2 axis
            z2, w2 = _split_rule(cut2, tj[None], wj[None], upper=upper)
            gv = jnp.asarray(g(v_base + l22[..., None] * z2[..., 0]), dtype)
            acc = acc + jnp.sum(jnp.broadcast_to(wf * w2[..., 0] * gv, v_base.shape), axis=-1)
        return acc, None

    out, _ = lax.scan(add_node, jnp.zeros(shape, dtype), (t, w))
    return out


def _psd_sqrt(cov: jax.Array) -> jax.Array:
    """Symmetric PSD square root S = V sqrt(max(lam, 0)) V^T of a batch of covariances (..., d, d).

    eigh rather than Cholesky because kernel covariances are routinely singular (identical or zero
    inputs, one G-var a multiple of another) and can be slightly indefinite after rounding; the
    eigenvalues are clipped at 0. The *symmetric* root (not V sqrt(lam)) is the unique PSD root, a
    continuous function of cov: eigenvector signs and the order of (near-)equal eigenvalues, which
    eigh picks arbitrarily, cancel out. With common random numbers this keeps the estimated kernel
    smooth across batch entries.
    """
    lam, vec = jnp.linalg.eigh(cov)  # symmetrises its input
    root = _safe_sqrt(lam)
    return jnp.einsum("...ik,...k,...jk->...ij", vec, root, vec, precision=_HIGHEST)


def _as_mean(mean: ArrayLike | Sequence[float], dim: int, dtype: np.dtype, name: str) -> jax.Array:
    """A mean vector (..., dim) of `dtype`; `mean` is usually a tuple of Python floats."""
    arr = jnp.asarray(mean, dtype)
    if arr.ndim == 0 or arr.shape[-1] != dim:
        raise ValueError(f"{name} must have length {dim} (last axis), got shape {arr.shape}")
    return arr


def _square_dim(cov: jax.Array, name: str) -> int:
    """k for a batch of covariances (..., k, k); otherwise a ValueError (a bug in the caller)."""
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must have shape (..., k, k), got {cov.shape}")
    return cov.shape[-1]


def _monte_carlo(
    h: Callable[[jax.Array], jax.Array],
    root: jax.Array,
    mean: jax.Array,
    samples: int,
    seed: int | jax.Array,
    chunk: int,
) -> tuple[jax.Array, jax.Array]:
    """Estimate E[h(mean + root z)], z ~ N(0, I_d), for each batch entry of root (..., d, d).

    h maps points (..., P, d) to values (..., P). Draws are shared by all batch entries (common
    random numbers) and used in antithetic pairs (z, -z). The pair averages are iid, so the standard
    error is computed from them; accumulating raw evaluations would ignore the (deliberate)
    correlation inside a pair and misstate the error. Chunks are merged with Chan's parallel
    variance update rather than a running sum of squares, which cancels catastrophically in float32
    when the variance is small compared with the mean squared.
    """
    if not isinstance(samples, int | np.integer) or samples < 4:
        raise ValueError(f"samples must be an int >= 4, got {samples!r}")
    if not isinstance(chunk, int | np.integer) or chunk < 2:
        raise ValueError(f"chunk must be an int >= 2, got {chunk!r}")
    dtype = root.dtype
    batch = jnp.broadcast_shapes(root.shape[:-2], mean.shape[:-1])
    d = root.shape[-1]
    n_pairs = int(samples) // 2
    per = min(int(chunk) // 2, n_pairs)  # antithetic pairs per scan step
    n_chunks = -(-n_pairs // per)  # the last chunk is partial: masked below
    key = jax.random.PRNGKey(seed)
    shift = mean[..., None, :]

    def add_chunk(
        carry: tuple[jax.Array, jax.Array, jax.Array], c: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], None]:
        count, avg, m2 = carry
        zc = jax.random.normal(jax.random.fold_in(key, c), (per, d), dtype)
        x = jnp.einsum("...ij,pj->...pi", root, zc, precision=_HIGHEST)  # (..., P, d)
        pair = 0.5 * (jnp.asarray(h(shift + x), dtype) + jnp.asarray(h(shift - x), dtype))
        pair = jnp.broadcast_to(pair, batch + (per,))
        valid = jnp.arange(per) < n_pairs - c * per
        n_c = jnp.minimum(n_pairs - c * per, per).astype(dtype)  # >= 1 by choice of n_chunks
        pair = jnp.where(valid, pair, 0)  # `where`, not a product: masked h may be inf
        c_avg = jnp.sum(pair, axis=-1) / n_c
        c_m2 = jnp.sum(jnp.where(valid, (pair - c_avg[..., None]) ** 2, 0), axis=-1)
        total = count + n_c
        delta = c_avg - avg
        avg = avg + delta * (n_c / total)
        m2 = m2 + c_m2 + delta * delta * (count * n_c / total)
        return (total, avg, m2), None

    init = (jnp.zeros((), dtype), jnp.zeros(batch, dtype), jnp.zeros(batch, dtype))
    (count, avg, m2), _ = lax.scan(add_chunk, init, jnp.arange(n_chunks))
    stderr = jnp.sqrt(m2 / ((count - 1) * count))
    return avg, stderr


def mc_pair(
    f: Callable[..., jax.Array],
    g: Callable[..., jax.Array],
    cov_ll: ArrayLike,
    cov_lr: ArrayLike,
    cov_rr: ArrayLike,
    mean_l: Sequence[float] | ArrayLike,
    mean_r: Sequence[float] | ArrayLike,
    *,
    samples: int = 65536,
    seed: int | jax.Array = 0,
    chunk: int = 4096,
) -> tuple[jax.Array, jax.Array]:
    """Monte Carlo estimate and standard error of E[f(a) g(b)], (a, b) in R^k x R^m jointly normal.

    Mean (mean_l, mean_r): tuples of Python floats of lengths k and m (arrays of shape (..., k)
    broadcasting against the batch also work). Covariance [[cov_ll, cov_lr], [cov_lr^T, cov_rr]],
    cov_ll (..., k, k), cov_lr (..., k, m), cov_rr (..., m, m) whose batch dims broadcast, e.g.
    (N1, 1, k, k), (N1, N2, k, m), (1, N2, m, m). f takes k arrays and g takes m arrays
    (positional), all vectorised. Returns (estimate, standard_error), both of the batch shape.

    - Common random numbers: the same standard-normal draws (from jax.random.PRNGKey(seed)) for
      every batch entry, so the estimated kernel matrix is smooth and consistent across entries;
      the same seed gives bit-identical results.
    - Antithetic pairs (z, -z); `samples` counts evaluation points, i.e. samples // 2 pairs. The
      standard error is that of the mean of the iid pair averages.
    - The joint covariance's symmetric square root comes from eigh with eigenvalues clipped at 0, so
      singular covariances (identical or zero inputs) give no NaN.
    - Memory is bounded by `chunk`: a lax.scan over chunks of `chunk` evaluation points holds
      O(batch x chunk x (k + m)) values at a time. Lower `chunk` for large kernel grids.

    Accuracy at the defaults: standard error sigma / sqrt(32768) with sigma the standard deviation
    of a pair average; e.g. ~9e-3 relative for E[relu(u) relu(v)] at unit variances, c = 0.5.
    """
    dtype = _float_dtype(cov_ll, cov_lr, cov_rr)
    cov_ll, cov_lr, cov_rr = (jnp.asarray(x, dtype) for x in (cov_ll, cov_lr, cov_rr))
    k = _square_dim(cov_ll, "cov_ll")
    m = _square_dim(cov_rr, "cov_rr")
    if cov_lr.ndim < 2 or cov_lr.shape[-2:] != (k, m):
        raise ValueError(f"cov_lr must have shape (..., {k}, {m}), got {cov_lr.shape}")
    ml = _as_mean(mean_l, k, dtype, "mean_l")
    mr = _as_mean(mean_r, m, dtype, "mean_r")
    mean_batch = jnp.broadcast_shapes(ml.shape[:-1], mr.shape[:-1])
    mean = jnp.concatenate(
        [jnp.broadcast_to(ml, mean_batch + (k,)), jnp.broadcast_to(mr, mean_batch + (m,))], axis=-1
    )
    batch = jnp.broadcast_shapes(cov_ll.shape[:-2], cov_lr.shape[:-2], cov_rr.shape[:-2])
    ll = jnp.broadcast_to(cov_ll, batch + (k, k))
    lr = jnp.broadcast_to(cov_lr, batch + (k, m))
    rr = jnp.broadcast_to(cov_rr, batch + (m, m))
    joint = jnp.concatenate(
        [jnp.concatenate([ll, lr], axis=-1), jnp.concatenate([jnp.swapaxes(lr, -1, -2), rr], -1)],
        axis=-2,
    )

    def h(x: jax.Array) -> jax.Array:
        a = [x[..., i] for i in range(k)]  # loops over the k + m variables, not batch entries
        b = [x[..., k + j] for j in range(m)]
        return f(*a) * g(*b)

    return _monte_carlo(h, _psd_sqrt(joint), mean, samples, seed, chunk)


def mc_mean(
    f: Callable[..., jax.Array],
    cov: ArrayLike,
    mean: Sequence[float] | ArrayLike,
    *,
    samples: int = 65536,
    seed: int | jax.Array = 0,
    chunk: int = 4096,
) -> tuple[jax.Array, jax.Array]:
    """Monte Carlo estimate and standard error of E[f(a)], a ~ N(mean, cov), cov (..., k, k).

    `mean` is a tuple of k Python floats (or an array (..., k)); f takes k arrays (positional).
    Same technique and guarantees as `mc_pair`: common random numbers across the batch, antithetic
    pairs, eigh square root with clipped eigenvalues, chunked lax.scan. Returns (estimate,
    standard_error) of the batch shape cov.shape[:-2].
    """
    dtype = _float_dtype(cov)
    cov = jnp.asarray(cov, dtype)
    k = _square_dim(cov, "cov")
    mean_arr = _as_mean(mean, k, dtype, "mean")

    def h(x: jax.Array) -> jax.Array:
        return f(*[x[..., i] for i in range(k)])

    return _monte_carlo(h, _psd_sqrt(cov), mean_arr, samples, seed, chunk)


# ---- data and array plumbing used by generated kernel modules ----------------------------------


def _fixed_order_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Σ_k a[..., k] b[..., k] summed in one fixed pairwise order, whatever the batch shape.

    BLAS matmuls and reductions pick their summation order by array shape, so the same pair of
    vectors can round differently in the N1×N2 grid and in the per-example diagonal. Kernel
    formulas are ill-conditioned at correlation 1 (arccos), where that 1e-16 difference becomes
    1e-8; with every inner product summed the same way, identical inputs give bitwise identical
    variances and covariances, and an exactly zero angle.
    """
    prod = a * b
    d = prod.shape[-1]
    size = 1 << max(d - 1, 0).bit_length()
    prod = jnp.pad(prod, [(0, 0)] * (prod.ndim - 1) + [(0, size - d)])
    while prod.shape[-1] > 1:
        half = prod.shape[-1] // 2
        prod = prod[..., :half] + prod[..., half:]
    return prod[..., 0]


def gram(x1: jax.Array, x2: jax.Array, p: int, q: int) -> jax.Array:
    """<x1[a, p], x2[b, q]> / d for all pairs (a, b): shape (N1, N2). x has shape (N, P, d)."""
    right = x2[:, q, :]
    rows = lax.map(lambda row: _fixed_order_dot(row[None, :], right), x1[:, p, :],
                   batch_size=64)
    return rows / x1.shape[-1]


def gram_diag(x: jax.Array, p: int, q: int) -> jax.Array:
    """<x[a, p], x[a, q]> / d for every example a: shape (N,)."""
    return _fixed_order_dot(x[:, p, :], x[:, q, :]) / x.shape[-1]


def full(x1: jax.Array, x2: jax.Array, value: ArrayLike) -> jax.Array:
    """`value` broadcast to the (N1, N2) kernel grid in the inputs' dtype (constants included)."""
    return jnp.broadcast_to(jnp.asarray(value, dtype=x1.dtype), (x1.shape[0], x2.shape[0]))


def matrix(rows: Sequence[Sequence[ArrayLike]]) -> jax.Array:
    """Stack a small matrix of broadcastable arrays into shape (..., k, m)."""
    entries = jnp.broadcast_arrays(*(jnp.asarray(e) for row in rows for e in row))
    k, m = len(rows), len(rows[0])
    return jnp.stack(entries, axis=-1).reshape(*entries[0].shape, k, m)


# Generated modules pass module-level integrand functions (stable, hashable): compile each
# expectation once per integrand and shape.
gauss_mean = jax.jit(gauss_mean, static_argnums=(0,), static_argnames=("degree",))
gauss_pair = jax.jit(gauss_pair, static_argnums=(0, 1), static_argnames=("degree",))
mc_pair = jax.jit(mc_pair, static_argnums=(0, 1), static_argnames=("samples", "seed", "chunk"))
mc_mean = jax.jit(mc_mean, static_argnums=(0,), static_argnames=("samples", "seed", "chunk"))
