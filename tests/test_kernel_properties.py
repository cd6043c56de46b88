"""Properties every compiled kernel has, on random valid programs (hypothesis).

- NNGP and NTK are finite and positive semi-definite;
- kernel_fn(x, x), which is not symmetrised, is symmetric to rounding and equals kernel_fn(x);
- NTK − NNGP is PSD: the NTK is the sum over parameters of their gradient Gram kernels, the
  readout's being the NNGP, and every such kernel is PSD — a wrong sign or a missing factor in
  the backward pass breaks this.
Programs whose kernels use a numerical rule are skipped here (sampling error would need its own
tolerance); numerical rules are tested in test_runtime.py and test_numerics.py.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from program_strategies import programs

import tpcompile

X = np.random.default_rng(0).normal(size=(6, 3))
X[4] = X[1]  # an identical pair: the correlation-1 corner of every closed form


def psd(m: np.ndarray) -> bool:
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    # float64 closed forms: rounding is ~1e-16 relative per entry; 1e-10 leaves a wide margin
    return bool(eig.min() >= -1e-10 * max(eig.max(), 1e-300))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_compiled_kernels_are_valid_kernels(source: str) -> None:
    c = tpcompile.compile(source)
    assume("(numerical)" not in c.source)
    k = c.kernel_fn(X)
    nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
    for m in (nngp, ntk):
        assert np.all(np.isfinite(m)), source
        assert psd(m), source
    assert psd(ntk - nngp), source
    # Symmetry on kernel_fn(X, X), which is not symmetrised (kernel_fn(X) is (K + K.T)/2, so
    # symmetric by construction): entries (i, j) and (j, i) are separate float64 evaluations with
    # the inputs swapped, equal up to a few hundred roundings of eps/2 = 1.1e-16 of max|K| (the
    # duplicate pair X[1] = X[4] has bitwise-equal dot products either way round, so no arccos
    # amplification at correlation 1). Measured over 75 random closed-form programs: <= 4.9e-16
    # max|K|; 1e-13 max|K| keeps a 200x margin and catches any swapped-argument cross term.
    k2 = c.kernel_fn(X, X)
    for m, mm in ((nngp, np.asarray(k2.nngp)), (ntk, np.asarray(k2.ntk))):
        atol = 1e-13 * np.abs(mm).max()
        np.testing.assert_allclose(mm, mm.T, rtol=0, atol=atol, err_msg=source)
        # kernel_fn(X) = (K + K.T)/2 of the same K: within half the asymmetry of kernel_fn(X, X)
        np.testing.assert_allclose(m, mm, rtol=0, atol=atol, err_msg=source)
