"""Gaussian expectations of functions of several Gaussians (THEORY.md §6.2, §6.4).

Where this sits in the pipeline: when an expectation involves a function of several G values that
does not factor over independent sources, the analysis (`kernels/plan.py` chooses the method) leaves
it to one of these rules; the generated kernel module calls them through `tpcompile.runtime`.

- `tensor_pair` / `tensor_mean`: smooth integrands in at most 4 dimensions, tensor Gauss-Hermite in
  the whitened coordinates (symmetric root of the joint covariance), the error estimated against
  the rule of 3/4 the degree.
- `mc_pair` / `mc_mean`: everything else (kinks, more dimensions). Common random numbers: every
  batch entry (pair of inputs) uses the same standard-normal draws, mapped through its own
  covariance root, so the estimated kernel is smooth across entries and identical inputs give
  identical rows. The draws come in fixed blocks of `BLOCK` antithetic pairs keyed by (seed, block
  index), so they do not depend on the batch size or the chunking: an entry computed alone equals
  the same entry in a batch. Antithetic pairs (z, -z) are exact for the odd part of the integrand.
  The standard error is that of the mean of the iid pair averages (a pair's two halves are
  deliberately correlated, so raw evaluations would misstate it); chunks merge by Chan's parallel
  update, which does not cancel in float32 the way a running sum of squares does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tpcompile.runtime.basics import (
    HIGHEST,
    Estimate,
    chunk_size,
    float_dtype,
    hermite_rule,
)
from tpcompile.runtime.guards import safe_sqrt

ArrayLike = jax.typing.ArrayLike
Fn = Callable[..., jax.Array]
BLOCK = 256  # antithetic pairs drawn per PRNG key


@functools.cache
def tensor_grid(degree: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """All degree^dim Gauss-Hermite nodes (P, dim) and product weights (P,)."""
    z, w = hermite_rule(degree)
    grids = np.meshgrid(*([z] * dim), indexing="ij")
    weights = np.meshgrid(*([w] * dim), indexing="ij")
    return (np.stack([g.ravel() for g in grids], -1), np.prod([g.ravel() for g in weights], 0))


def psd_sqrt(cov: jax.Array) -> jax.Array:
    """Symmetric PSD root V sqrt(max(lam, 0)) V^T of covariances (..., d, d).

    eigh, not Cholesky: kernel covariances are routinely singular (identical or zero inputs) and
    slightly indefinite after rounding. The symmetric root is unique and continuous in cov, so
    sign and order choices of eigh cancel and shared nodes give estimates smooth across entries."""
    lam, vec = jnp.linalg.eigh(cov)
    return jnp.einsum("...ik,...k,...jk->...ij", vec, safe_sqrt(lam), vec, precision=HIGHEST)


def _tensor_value(h: Fn, root: jax.Array, mean: jax.Array, degree: int) -> jax.Array:
    nodes, weights = tensor_grid(degree, root.shape[-1])
    batch = jnp.broadcast_shapes(root.shape[:-2], mean.shape[:-1])
    size = chunk_size(int(np.prod(batch)), 4096)
    count = -(-len(weights) // size)
    zs = np.zeros((count * size, root.shape[-1]))
    ws = np.zeros(count * size)
    zs[: len(weights)], ws[: len(weights)] = nodes, weights

    def step(acc: jax.Array, node: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        zc, wc = node
        x = mean[..., None, :] + jnp.einsum("...ij,pj->...pi", root, zc, precision=HIGHEST)
        return acc + jnp.sum(wc * jnp.broadcast_to(h(x), batch + wc.shape), -1), None

    xs = (
        jnp.asarray(zs.reshape(count, size, -1), root.dtype),
        jnp.asarray(ws.reshape(count, size), root.dtype),
    )
    out, _ = lax.scan(step, jnp.zeros(batch, root.dtype), xs)
    return out


def tensor_estimate(h: Fn, root: jax.Array, mean: jax.Array, degree: int) -> Estimate:
    """E[h(mean + root z)], z ~ N(0, I): tensor Gauss-Hermite, estimate from degree - degree/4."""
    fine = _tensor_value(h, root, mean, degree)
    low = _tensor_value(h, root, mean, degree - max(2, degree // 4))
    return Estimate(fine, jnp.abs(fine - low))


def joint_covariance(cov_ll: jax.Array, cov_lr: jax.Array, cov_rr: jax.Array) -> jax.Array:
    """[[ll, lr], [lr^T, rr]] over the broadcast batch of the three blocks."""
    k, m = cov_ll.shape[-1], cov_rr.shape[-1]
    batch = jnp.broadcast_shapes(cov_ll.shape[:-2], cov_lr.shape[:-2], cov_rr.shape[:-2])
    ll = jnp.broadcast_to(cov_ll, batch + (k, k))
    lr = jnp.broadcast_to(cov_lr, batch + (k, m))
    rr = jnp.broadcast_to(cov_rr, batch + (m, m))
    return jnp.concatenate(
        [jnp.concatenate([ll, lr], -1), jnp.concatenate([jnp.swapaxes(lr, -1, -2), rr], -1)], -2
    )


def product_integrand(f: Fn, g: Fn, k: int, m: int) -> Fn:
    """h(x) = f(x_1..x_k) g(x_k+1..x_k+m) for points x (..., k + m)."""

    def h(x: jax.Array) -> jax.Array:
        return f(*[x[..., i] for i in range(k)]) * g(*[x[..., k + j] for j in range(m)])

    return h


@functools.partial(jax.jit, static_argnums=(0, 1), static_argnames=("degree",))
def tensor_pair(
    f: Fn,
    g: Fn,
    cov_ll: jax.Array,
    cov_lr: jax.Array,
    cov_rr: jax.Array,
    mean_l: jax.Array,
    mean_r: jax.Array,
    *,
    degree: int = 16,
) -> Estimate:
    """E[f(a) g(b)], (a, b) in R^k x R^m jointly normal, k + m <= 4, f and g smooth: degree^(k+m)
    Gauss-Hermite nodes per entry. Arguments as for `mc_pair`."""
    k, m = cov_ll.shape[-1], cov_rr.shape[-1]
    mean = jnp.concatenate(
        jnp.broadcast_arrays(
            jnp.asarray(mean_l, cov_ll.dtype)[..., :k], jnp.asarray(mean_r, cov_ll.dtype)[..., :m]
        ),
        -1,
    )
    root = psd_sqrt(joint_covariance(cov_ll, cov_lr, cov_rr))
    return tensor_estimate(product_integrand(f, g, k, m), root, mean, degree)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("degree",))
def tensor_mean(f: Fn, cov: jax.Array, mean: jax.Array, *, degree: int = 16) -> Estimate:
    """E[f(a)], a ~ N(mean, cov) in R^k, k <= 4, f smooth."""
    k = cov.shape[-1]
    return tensor_estimate(
        lambda x: f(*[x[..., i] for i in range(k)]),
        psd_sqrt(cov),
        jnp.asarray(mean, cov.dtype),
        degree,
    )


# ---- Monte Carlo ---------------------------------------------------------------------------------


def _key(seed: int | tuple[int, int]) -> jax.Array:
    """seed, or (seed, stream): one quantity per stream, so different quantities are independent."""
    if isinstance(seed, tuple):
        return jax.random.fold_in(jax.random.PRNGKey(seed[0]), seed[1])
    return jax.random.PRNGKey(seed)


def _monte_carlo(
    h: Callable[[jax.Array], jax.Array],
    root: jax.Array,
    mean: jax.Array,
    samples: int,
    seed: int | tuple[int, int],
    chunk: int,
) -> Estimate:
    """E[h(mean + root z)], z ~ N(0, I_d), for each batch entry of root (..., d, d); h maps points
    (..., P, d) to values (..., P)."""
    if not isinstance(samples, int | np.integer) or samples < 4:
        raise ValueError(f"samples must be an int >= 4, got {samples!r}")
    if not isinstance(chunk, int | np.integer) or chunk < 2:
        raise ValueError(f"chunk must be an int >= 2, got {chunk!r}")
    dtype = root.dtype
    batch = jnp.broadcast_shapes(root.shape[:-2], mean.shape[:-1])
    d = root.shape[-1]
    n_pairs = int(samples) // 2
    per_step = chunk_size(int(np.prod(batch)), int(chunk)) // 2  # pairs per scan step
    blocks = max(1, min(per_step // BLOCK, -(-n_pairs // BLOCK)))
    per = blocks * BLOCK
    n_chunks = -(-n_pairs // per)  # the last chunk is partial: masked below
    key = _key(seed)
    shift = mean[..., None, :]

    def draws(c: jax.Array) -> jax.Array:
        ids = c * blocks + jnp.arange(blocks)
        z = jax.vmap(lambda b: jax.random.normal(jax.random.fold_in(key, b), (BLOCK, d), dtype))
        return z(ids).reshape(per, d)

    def add_chunk(
        carry: tuple[jax.Array, jax.Array, jax.Array], c: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], None]:
        count, avg, m2 = carry
        x = jnp.einsum("...ij,pj->...pi", root, draws(c), precision=HIGHEST)  # (..., P, d)
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
    return Estimate(avg, jnp.sqrt(m2 / ((count - 1) * count)))


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


@functools.partial(jax.jit, static_argnums=(0, 1), static_argnames=("samples", "seed", "chunk"))
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
    seed: int | tuple[int, int] = 0,
    chunk: int = 4096,
) -> Estimate:
    """Monte Carlo estimate and standard error of E[f(a) g(b)], (a, b) in R^k x R^m jointly normal.

    Mean (mean_l, mean_r): tuples of Python floats of lengths k and m (or arrays (..., k)).
    Covariance [[cov_ll, cov_lr], [cov_lr^T, cov_rr]] with blocks (..., k, k), (..., k, m),
    (..., m, m) whose batch dims broadcast, e.g. (N1, 1, k, k), (N1, N2, k, m), (1, N2, m, m).
    f takes k arrays and g takes m arrays (positional). Returns Estimate(value, standard error) of
    the batch shape. `samples` counts evaluation points (samples // 2 antithetic pairs); the joint
    covariance's symmetric root (eigh, eigenvalues clipped at 0) makes singular covariances safe;
    memory is bounded by `chunk` points per scan step (lowered automatically for large batches).

    Accuracy at the defaults: ~9e-3 relative standard error for E[relu(u) relu(v)] at unit
    variances and c = 0.5; ~1e-2 for tanh.
    """
    dtype = float_dtype(cov_ll, cov_lr, cov_rr)
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
    root = psd_sqrt(joint_covariance(cov_ll, cov_lr, cov_rr))
    return _monte_carlo(product_integrand(f, g, k, m), root, mean, samples, seed, chunk)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("samples", "seed", "chunk"))
def mc_mean(
    f: Callable[..., jax.Array],
    cov: ArrayLike,
    mean: Sequence[float] | ArrayLike,
    *,
    samples: int = 65536,
    seed: int | tuple[int, int] = 0,
    chunk: int = 4096,
) -> Estimate:
    """Monte Carlo estimate and standard error of E[f(a)], a ~ N(mean, cov), cov (..., k, k); the
    same technique and guarantees as `mc_pair`."""
    dtype = float_dtype(cov)
    cov = jnp.asarray(cov, dtype)
    k = _square_dim(cov, "cov")
    mean_arr = _as_mean(mean, k, dtype, "mean")

    def h(x: jax.Array) -> jax.Array:
        return f(*[x[..., i] for i in range(k)])

    return _monte_carlo(h, psd_sqrt(cov), mean_arr, samples, seed, chunk)
