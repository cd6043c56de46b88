"""Monte Carlo for Gaussian expectations of functions of several Gaussians (THEORY.md §6.2).

Where this sits in the pipeline: when an expectation involves a function of several G values that
does not factor over independent sources and is not smooth in at most 4 dimensions (that is
`tensor.py`'s), the analysis (`kernels/plan.py`) leaves it to Monte Carlo; the generated kernel
module calls `mc_group` through `tpcompile.runtime`, once per group of quantities over one joint
law (`laws.py`); `mc_pair` and `mc_mean` are one-member groups.

Common random numbers: every batch entry (pair of inputs) uses the same standard-normal draws,
mapped through its own covariance root, so the estimated kernel is smooth across entries and
identical inputs give identical rows. Antithetic pairs (z, -z) are exact for the odd part of the
integrand. The standard error is that of the mean of the iid pair averages (a pair's two halves
are deliberately correlated, so raw evaluations would misstate it).

Groups. One call for all the quantities over one law (e.g. the NTK's E[f_i(a) g_j(b)] for all
pairs of gates of one time step), evaluated step by step with compilations shared by every group
(`laws.py`: points, each distinct function once, then a per-member update): one compiled function
per group cost ~0.75 s of XLA time each, 85 of the GRU's (T = 4) 112 s first call. Generated
integrands are `basics.Integrand`s, equal when their code is, so their compilations are shared
across groups and programs.

Draws. The standard normals come from NumPy's Philox generator keyed by (seed, stream), on the
host: JAX's threefry compiles for ~4 s per shape, more than the integrals themselves. They depend
on (seed, stream, samples, dimension) only, never on the batch or the chunking, so an entry
computed alone equals the same entry in a batch (up to the rounding of the chunked sums). The
members of a group share the draws: each estimate and its standard error are those of an
independent run, but the estimates of one group are correlated with one another.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tpcompile.runtime.basics import Estimate
from tpcompile.runtime.laws import (
    ArrayLike,
    Fn,
    Law,
    Member,
    distinct,
    function_values,
    law_root,
    padded_steps,
    pair_law,
    points,
    square_dim,
    step_size,
)

Seed = int | tuple[int, int]
_DRAW_CACHE_BYTES = 1 << 27  # recent draws kept for the next kernel call (128 MB)


_draws: collections.OrderedDict[tuple[int, ...], np.ndarray] = collections.OrderedDict()
_draws_lock = threading.Lock()


def standard_draws(seed: Seed, n: int, dim: int) -> np.ndarray:
    """n standard-normal points in R^dim (float64, read-only) for seed, or (seed, stream): one
    stream per group, so different groups are independent. Column j holds the stream's normals
    j·n to (j + 1)·n - 1, so the draws of a lower dimension are a prefix of these."""
    base, stream = seed if isinstance(seed, tuple) else (seed, 0)
    key = (int(base), int(stream), int(n), int(dim))
    with _draws_lock:
        if key in _draws:
            _draws.move_to_end(key)
            return _draws[key]
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([key[0], key[1]])))
    z = np.ascontiguousarray(rng.standard_normal((dim, n)).T)
    z.flags.writeable = False
    with _draws_lock:
        _draws[key] = z
        while len(_draws) > 1 and sum(a.nbytes for a in _draws.values()) > _DRAW_CACHE_BYTES:
            _draws.popitem(last=False)
    return z


@jax.jit
def _mc_update(
    state: tuple[jax.Array, jax.Array, jax.Array],
    f: jax.Array,
    g: jax.Array | None,
    first: jax.Array,
    valid: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One step of one member: f (and g) at the points mean + root z, then mean - root z
    (flat `points`, from (*batch, 2P)). The state (K, s1, s2) sums the shifted pair averages
    p - K and their squares, K the member's first pair value: sum (p - K)^2 does not cancel the
    way raw sums of squares do in float32 (K is a typical value), and a constant integrand gives
    exactly 0. Pairs at positions >= `valid` are padding."""
    k, s1, s2 = state
    both = (f if g is None else f * g).reshape(*k.shape, -1)
    per = both.shape[-1] // 2
    pair = 0.5 * (both[..., :per] + both[..., per:])  # the antithetic pairs (z, -z)
    k = jnp.where(first, pair[..., 0], k)
    dev = jnp.where(jnp.arange(per) < valid, pair - k[..., None], 0)  # `where`: h may be inf
    return k, s1 + jnp.sum(dev, -1), s2 + jnp.sum(dev * dev, -1)


@functools.partial(jax.jit, static_argnames=("n_pairs",))
def _mc_finish(state: tuple[jax.Array, jax.Array, jax.Array], *, n_pairs: int) -> Estimate:
    k, s1, s2 = state
    var = jnp.maximum(s2 - s1 * s1 / n_pairs, 0) / (n_pairs - 1)
    return Estimate(k + s1 / n_pairs, jnp.sqrt(var / n_pairs))


def mc_group(
    members: Sequence[Member],
    cov: ArrayLike | Law,
    mean: ArrayLike | Sequence[float],
    *,
    split: int,
    samples: int = 65536,
    seed: Seed = 0,
    chunk: int | None = None,
) -> tuple[Estimate, ...]:
    """Monte Carlo estimates and standard errors of E[f(a) g(b)] for each member (f, g) (g None:
    E[f(a)]), x = (a, b) ~ N(mean, cov), a the first `split` variables; cov (..., d, d) or a
    `Law`, mean (..., d) (usually a tuple of Python floats). `samples` counts evaluation points
    (samples // 2 antithetic pairs), evaluated in steps of at most `chunk` points (by default
    a size from a memory budget, `laws.step_size`); the results do not depend on the steps."""
    if not isinstance(samples, int | np.integer) or samples < 4:
        raise ValueError(f"samples must be an int >= 4, got {samples!r}")
    if chunk is not None and (not isinstance(chunk, int | np.integer) or chunk < 2):
        raise ValueError(f"chunk must be None or an int >= 2, got {chunk!r}")
    root, mean, batch = law_root(cov, mean)
    d, n_pairs = mean.shape[-1], int(samples) // 2
    per = step_size(batch, 2 * n_pairs, None if chunk is None else int(chunk)) // 2
    # The last step is padded: one shape for all steps.
    draws = padded_steps(standard_draws(seed, n_pairs, d), per, mean.dtype)
    lefts, rights, index = distinct(members)
    zero = jnp.zeros(batch, mean.dtype)
    states = [(zero, zero, zero)] * len(index)
    for start in range(0, n_pairs, per):
        cols = points(root, mean, draws, start, size=per, antithetic=True)
        fs = function_values(lefts, cols[:split])
        gs = function_values(rights, cols[split:])
        first, valid = start == 0, n_pairs - start
        states = [
            _mc_update(state, fs[i], None if j is None else gs[j], first, valid)
            for state, (i, j) in zip(states, index, strict=True)
        ]
    return tuple(_mc_finish(state, n_pairs=n_pairs) for state in states)


def mc_pair(
    f: Fn,
    g: Fn,
    cov_ll: ArrayLike,
    cov_lr: ArrayLike,
    cov_rr: ArrayLike,
    mean_l: Sequence[float] | ArrayLike,
    mean_r: Sequence[float] | ArrayLike,
    *,
    samples: int = 65536,
    seed: Seed = 0,
    chunk: int | None = None,
) -> Estimate:
    """Monte Carlo estimate and standard error of E[f(a) g(b)], (a, b) in R^k x R^m jointly normal.

    Mean (mean_l, mean_r): tuples of Python floats of lengths k and m (or arrays (..., k)).
    Covariance [[cov_ll, cov_lr], [cov_lr^T, cov_rr]] with blocks (..., k, k), (..., k, m),
    (..., m, m) whose batch dims broadcast, e.g. (N1, 1, k, k), (N1, N2, k, m), (1, N2, m, m).
    f takes k arrays and g takes m arrays (positional). Returns Estimate(value, standard error) of
    the batch shape; the joint covariance's symmetric root (eigh, eigenvalues clipped at 0) makes
    singular covariances safe. A one-member `mc_group`.

    Accuracy at the defaults: ~9e-3 relative standard error for E[relu(u) relu(v)] at unit
    variances and c = 0.5; ~1e-2 for tanh.
    """
    cov, mean, k = pair_law(cov_ll, cov_lr, cov_rr, mean_l, mean_r)
    return mc_group(((f, g),), cov, mean, split=k, samples=samples, seed=seed, chunk=chunk)[0]


def mc_mean(
    f: Fn,
    cov: ArrayLike,
    mean: Sequence[float] | ArrayLike,
    *,
    samples: int = 65536,
    seed: Seed = 0,
    chunk: int | None = None,
) -> Estimate:
    """Monte Carlo estimate and standard error of E[f(a)], a ~ N(mean, cov), cov (..., k, k); the
    same technique and guarantees as `mc_pair`."""
    k = square_dim(jnp.asarray(cov), "cov")
    return mc_group(((f, None),), cov, mean, split=k, samples=samples, seed=seed, chunk=chunk)[0]
