"""Properties every compiled kernel has, on random valid programs (hypothesis).

- NNGP and NTK are finite, symmetric and positive semi-definite;
- kernel_fn(x, x) equals kernel_fn(x);
- NTK − NNGP is PSD: the NTK is the sum over parameters of their gradient Gram kernels, the
  readout's being the NNGP, and every such kernel is PSD — a wrong sign or a missing factor in
  the backward pass breaks this.
Programs whose kernels use a numerical rule are skipped here (sampling error would need its own
tolerance); numerical rules are tested in test_runtime.py and test_numerics.py.
"""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from program_strategies import programs

import tpcompile

jax.config.update("jax_enable_x64", True)

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
        np.testing.assert_array_equal(m, m.T)
        assert psd(m), source
    assert psd(ntk - nngp), source
    k2 = c.kernel_fn(X, X)
    np.testing.assert_allclose(np.asarray(k2.ntk), ntk, rtol=1e-12, atol=1e-14 * np.abs(ntk).max())
    np.testing.assert_allclose(np.asarray(k2.nngp), nngp, rtol=1e-12,
                               atol=1e-14 * np.abs(nngp).max())
