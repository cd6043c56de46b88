"""Hermite (Mehler) series for E[f(u) g(v)] of one-variable functions (THEORY.md §5, Mehler).

Where this sits in the pipeline: for a pair expectation of two functions of one G value each, with
no closed form, both sides smooth (or one a polynomial), the analysis (`kernels/plan.py`) emits two
kinds of quantity: per input, the Hermite coefficients of each side (`hermite_expansion`, computed
in the generated module's `diagonal`), and per pair of inputs the series over them (`mehler_pair`,
in `cross`). Coefficients cost one 1-D rule per input; a pair then costs K multiply-adds instead
of a 2-D quadrature.

Mathematics. With u = m1 + sd1 z, v = m2 + sd2 w and corr(z, w) = c, expand in normalised
probabilists' Hermite polynomials h_k = He_k / sqrt(k!), orthonormal under N(0, 1):
    f(m1 + sd1 z) = Σ_k a_k h_k(z),   g(m2 + sd2 w) = Σ_k b_k h_k(w),
    E[f(u) g(v)] = Σ_k a_k b_k c^k                                  (Mehler's formula).
Means of any size are part of the expansion. The a_k are bounded by ||f|| = sqrt(E f^2) and
|c| <= 1, so the series (Horner's rule) is stable, including at c = +-1 (Parseval). For f = g over
one batch the truncated series is itself a PSD kernel: each term is a rank-one matrix times the
elementwise power C^k of a correlation matrix, PSD by the Schur product theorem.

Accuracy. By Cauchy-Schwarz the truncation after K terms errs by at most T_a(K) T_b(K), with the
tail norm T_a(K)^2 = Σ_{k>=K} a_k^2 = E f^2 - Σ_{k<K} a_k^2, computable per input. K is the smallest
count with T_a T_b <= tol/2 · ||f|| ||g|| over the batch (an a-posteriori choice, valid for every
correlation). The coefficients come from composite Gauss-Legendre on [-13, 13] (28 panels, 24 nodes
each, extra breakpoints at the kinks); their error is estimated against 16 nodes per panel, and
panels and terms grow in stages until it is below tol/4. Reported error per entry:
    T_a T_b + qerr_a ||g|| + qerr_b ||f|| + K eps ||f|| ||g||.
Adaptive choices need concrete arrays; under jit the starting sizes are used and the error
estimate still says how good they were.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tpcompile.runtime.basics import HIGHEST, float_dtype, is_traced, legendre
from tpcompile.runtime.guards import safe_div, safe_sqrt
from tpcompile.runtime.quadrature import PANEL_SPAN, PANELS, panel_rule

ArrayLike = jax.typing.ArrayLike
Fn = Callable[[jax.Array], jax.Array]

# (terms, panels) tried in turn by `hermite_expansion`. For tol 1e-10, 256 terms serve tanh up to
# variance ~2.5, 512 up to ~6, 2048 up to ~25; more terms need finer panels to resolve He_k.
STAGES = (
    (256, PANELS),
    (512, PANELS),
    (1024, 3 * PANELS // 2),
    (2048, 2 * PANELS),
    (2048, 4 * PANELS),
)
NODES = 24  # Gauss-Legendre nodes per panel; the estimate uses 2/3 of them


@jax.tree_util.register_pytree_node_class
class HermiteExpansion:
    """Per-input Hermite coefficients of one function: coef (..., K), tail (..., K + 1) with
    tail[..., k] = T(k), norm (...) = sqrt(E f^2), qerr (...) = estimated l2 error of coef.

    Indexing applies to the batch axes only, so `x[:, None]` and `x[None, :]` broadcast an
    expansion like any per-input array (as do `rt.columns` and `rt.rows`, leaf by leaf)."""

    def __init__(self, coef: jax.Array, tail: jax.Array, norm: jax.Array, qerr: jax.Array) -> None:
        self.coef, self.tail, self.norm, self.qerr = coef, tail, norm, qerr
        self._relative_tail: np.ndarray | None = None

    @property
    def terms(self) -> int:
        return self.coef.shape[-1]

    def __getitem__(self, index: Any) -> HermiteExpansion:
        index = index if isinstance(index, tuple) else (index,)
        vec = (*index, slice(None))
        return HermiteExpansion(self.coef[vec], self.tail[vec], self.norm[index], self.qerr[index])

    def truncated(self, terms: int) -> HermiteExpansion:
        return HermiteExpansion(
            self.coef[..., :terms], self.tail[..., : terms + 1], self.norm, self.qerr
        )

    def relative_tail(self) -> np.ndarray:
        """max over the batch of T(k) / ||f||, k = 0..K (concrete arrays only). Kept: every
        pair series that reads this expansion asks for it (a host transfer each time)."""
        if self._relative_tail is None:
            rel = safe_div(self.tail, self.norm[..., None])
            self._relative_tail = np.asarray(jnp.max(rel.reshape(-1, rel.shape[-1]), axis=0))
        return self._relative_tail

    def tree_flatten(self) -> tuple[tuple[jax.Array, ...], None]:
        return (self.coef, self.tail, self.norm, self.qerr), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[jax.Array, ...]) -> HermiteExpansion:
        return cls(*children)

    def __repr__(self) -> str:
        return f"HermiteExpansion(batch={self.norm.shape}, terms={self.terms})"


class MehlerEstimate(NamedTuple):
    """The series value, its error bound and the number of terms summed."""

    value: jax.Array
    error: jax.Array
    terms: int


def _psi(
    z: jax.Array, sw: jax.Array, terms: int, emit: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """emit(sqrt(w) h_k(z)) for k < terms, stacked on a leading axis. Carrying sqrt(w) h_k rather
    than h_k keeps every value O(1): h_k(13) alone reaches 1e36, past float32's range."""

    def step(
        carry: tuple[jax.Array, jax.Array], k: jax.Array
    ) -> tuple[tuple[jax.Array, ...], jax.Array]:
        prev, cur = carry
        kf = k.astype(z.dtype)
        nxt = (z * cur - jnp.sqrt(kf) * prev) / jnp.sqrt(kf + 1)
        return (cur, nxt), emit(cur)

    _, out = lax.scan(step, (jnp.zeros_like(sw), sw), jnp.arange(terms))
    return out


@functools.lru_cache(maxsize=16)
def _table(terms: int, panels: int, n: int, dtype: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Nodes z, sqrt(weights) and the table sqrt(w) h_k(z) (nodes, terms) of the panel rule
    without kinks: the same for every input and every function, so built once, in float64."""
    t, w = legendre(n)
    edges = np.linspace(-PANEL_SPAN, PANEL_SPAN, panels + 1)
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    z = (mid[:, None] + half[:, None] * t).ravel()
    sw = np.sqrt((half[:, None] * w).ravel() * np.exp(-z * z / 2) / np.sqrt(2 * np.pi))
    table = np.empty((len(z), terms))
    prev, cur = np.zeros_like(z), sw
    for k in range(terms):
        table[:, k] = cur
        prev, cur = cur, (z * cur - np.sqrt(k) * prev) / np.sqrt(k + 1)
    return tuple(jnp.asarray(a, dtype) for a in (z, sw, table))


def _coefficients(
    f: Fn,
    s: jax.Array,
    m: jax.Array,
    kinks: tuple[float, ...],
    terms: int,
    panels: int,
    n: int,
    table: tuple[jax.Array, ...] | None,
) -> tuple[jax.Array, jax.Array]:
    """(coef (..., terms), E f^2 (...)) by the panel rule with n nodes per panel."""
    sd = safe_sqrt(s)
    if table is None:  # nodes move with each input's kink positions: one recurrence per input
        z, w = panel_rule(kinks, m, sd, panels, n)
        sw = jnp.sqrt(w)
    else:  # the same nodes for every input: the Hermite table, then a matrix product
        z, sw, table_k = table
    fz = jnp.asarray(f(m[..., None] + sd[..., None] * z), s.dtype)
    fz = jnp.broadcast_to(fz, jnp.broadcast_shapes(fz.shape, s.shape + z.shape[-1:]))
    sf = sw * fz
    energy = jnp.sum(sf * sf, axis=-1)
    if table is None:
        coef = jnp.moveaxis(_psi(z, sw, terms, lambda p: jnp.sum(sf * p, -1)), 0, -1)
    else:
        coef = jnp.einsum("...p,pk->...k", sf, table_k, precision=HIGHEST)
    return coef, energy


@functools.partial(
    jax.jit, static_argnums=(0,), static_argnames=("kinks", "terms", "panels", "n", "complete")
)
def _expansion(
    f: Fn,
    s: jax.Array,
    m: jax.Array,
    tables: tuple | None,
    *,
    kinks: tuple[float, ...],
    terms: int,
    panels: int,
    n: int,
    complete: bool,
) -> HermiteExpansion:
    fine, coarse = tables or (None, None)
    coef, energy = _coefficients(f, s, m, kinks, terms, panels, n, fine)
    low, _ = _coefficients(f, s, m, kinks, terms, panels, n - n // 3, coarse)
    sq = coef * coef
    # The energy beyond the computed terms: 0 for a polynomial of lower degree, where the
    # difference below would only be rounding (~eps E f^2, i.e. sqrt(eps) ||f|| as a norm).
    rest = jnp.zeros_like(energy) if complete else jnp.maximum(energy - jnp.sum(sq, -1), 0)
    upper = jnp.cumsum(sq[..., ::-1], axis=-1)[..., ::-1]  # Σ_{j>=k}, summed small to large
    tail = jnp.sqrt(jnp.concatenate([upper, jnp.zeros_like(rest)[..., None]], -1) + rest[..., None])
    qerr = jnp.sqrt(jnp.sum((coef - low) ** 2, -1))
    return HermiteExpansion(coef, tail, jnp.sqrt(energy), qerr)


def effective_tol(tol: float, dtype: np.dtype) -> float:
    """The tolerance the arithmetic can resolve: energies are summed to ~eps relative."""
    return max(float(tol), 64 * float(jnp.finfo(dtype).eps))


def _first_below(values: np.ndarray, bound: float) -> int | None:
    hits = np.nonzero(values <= bound)[0]
    return int(hits[0]) if len(hits) else None


def hermite_expansion(
    f: Fn,
    s: ArrayLike,
    m: ArrayLike = 0.0,
    *,
    kinks: tuple[float, ...] = (),
    order: int | None = None,
    complete: bool = False,
    tol: float = 1e-10,
) -> HermiteExpansion:
    """Hermite coefficients of f(m + sqrt(s) z) for each entry of s (and m).

    `kinks`: u-values where f is not smooth (breakpoints of the 1-D rule). `order`: a fixed number
    of terms (the partner of a polynomial needs exactly its degree + 1); `complete`: f is a
    polynomial of degree < order, so the tail beyond is exactly 0 (the computed E f^2 - Σ a_k^2
    would leave a rounding residue of ~sqrt(eps) ||f||). Otherwise `STAGES` are tried in turn
    until the relative tail norm T(K)/||f|| is <= sqrt(tol/2)/4 for every input: a pair needs
    T_a T_b <= tol/2, and the margin of 4 covers a partner that decays more slowly. A stage also
    fails when the coefficients' estimated error exceeds tol/4 relative. Few fixed stages rather
    than a search keep the number of compilations small; the extra terms cost little (one matrix
    product), and `mehler_pair` sums only as many as both tails require."""
    dtype = float_dtype(s)
    s, m = jnp.asarray(s, dtype), jnp.asarray(m, dtype)
    shape = jnp.broadcast_shapes(s.shape, m.shape)
    s, m = jnp.broadcast_to(s, shape), jnp.broadcast_to(m, shape)
    kinks = tuple(float(k) for k in kinks)
    tol = effective_tol(tol, dtype)
    for terms, panels in STAGES:
        terms = order or terms
        tables = (
            None
            if kinks
            else tuple(_table(terms, panels, k, dtype.name) for k in (NODES, NODES - NODES // 3))
        )
        exp = _expansion(
            f, s, m, tables, kinks=kinks, terms=terms, panels=panels, n=NODES, complete=complete
        )
        if is_traced(s, m):
            return exp
        if float(jnp.max(safe_div(exp.qerr, exp.norm), initial=0.0)) > tol / 4:
            continue
        if order is not None or exp.relative_tail()[-1] <= np.sqrt(tol / 2) / 4:
            return exp
    return exp


@jax.jit
def _mehler(
    a: HermiteExpansion,
    b: HermiteExpansion,
    s11: jax.Array,
    s12: jax.Array,
    s22: jax.Array,
    terms: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    c = jnp.clip(safe_div(s12, safe_sqrt(s11 * s22)), -1, 1)  # zero variance: c^0 = 1 only
    shape = jnp.broadcast_shapes(c.shape, a.norm.shape, b.norm.shape)
    c = jnp.broadcast_to(c, shape)

    # Terms on the leading axis: indexing it is a contiguous slice (the last axis: 30x slower).
    at, bt = jnp.moveaxis(a.coef, -1, 0), jnp.moveaxis(b.coef, -1, 0)

    def step(i: jax.Array, acc: jax.Array) -> jax.Array:  # Horner, from the last term down
        k = terms - 1 - i
        return acc * c + (
            lax.dynamic_index_in_dim(at, k, 0, keepdims=False)
            * lax.dynamic_index_in_dim(bt, k, 0, keepdims=False)
        )

    # A traced number of terms: one compilation per shape, whatever the tails ask for.
    value = lax.fori_loop(0, terms, step, jnp.zeros(shape, c.dtype))
    eps = float(jnp.finfo(c.dtype).eps)
    tails = [lax.dynamic_index_in_dim(e.tail, terms, axis=-1, keepdims=False) for e in (a, b)]
    error = (
        tails[0] * tails[1]
        + a.qerr * b.norm
        + b.qerr * a.norm
        + 4 * (terms + 1) * eps * a.norm * b.norm
    )
    return value, jnp.broadcast_to(error, shape)


def mehler_pair(
    a: HermiteExpansion,
    b: HermiteExpansion,
    s11: ArrayLike,
    s12: ArrayLike,
    s22: ArrayLike,
    *,
    tol: float = 1e-10,
) -> MehlerEstimate:
    """E[f(u) g(v)] = Σ_k a_k b_k c^k, c = s12 / sqrt(s11 s22), from the expansions of f (at u's
    mean and variance) and g; arguments broadcast like kernel grids ((N1, 1), (N1, N2), (1, N2)).
    Sums the fewest terms whose tail bound is <= tol/2 relative to ||f|| ||g||."""
    dtype = float_dtype(s11, s12, s22)
    s11, s12, s22 = (jnp.asarray(x, dtype) for x in (s11, s12, s22))
    terms = min(a.terms, b.terms)
    if not is_traced(a, b):
        bound = a.relative_tail()[: terms + 1] * b.relative_tail()[: terms + 1]
        enough = _first_below(bound, effective_tol(tol, dtype) / 2)
        terms = terms if enough is None else enough
    value, error = _mehler(a, b, s11, s12, s22, jnp.asarray(terms, jnp.int32))
    return MehlerEstimate(value, error, terms)
