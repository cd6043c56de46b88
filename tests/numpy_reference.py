"""Independent NumPy (float64) reference kernels for tpcompile's acceptance tests.

Everything here is written from the math (DESIGN.md §3, THEORY.md §3.4 and §5), not from tpcompile,
and imports neither tpcompile nor JAX. Parameterization: P2, the neural-tangents "ntk" convention
that tpcompile uses (DESIGN §3):

* a weight ``W ~ N(0, s2)`` applied to a vector of fan-in m computes ``sqrt(s2/m) * omega @ h`` with
  ``omega`` iid N(0, 1), and ``omega`` is the trained parameter;
* a bias ``b ~ N(0, s2)`` is ``sqrt(s2) * beta`` with ``beta`` trained;
* the readout is ``f = sqrt(sv2/n) * v . y (+ sqrt(svb2) * beta0)``.

Contents:

1. Dual maps ``V(s11, s12, s22) = E[phi(u) psi(v)]`` for (u, v) ~ N(0, [[s11, s12], [s12, s22]]):
   closed forms for relu, step, erf, erf', identity, and erf + relu; a conditioning Gauss-Legendre
   quadrature (``quadrature_reference.graded_pair``) for everything else (relu * erf) and for
   checking the closed forms. In ``numpy_reference_maps.py``.
2. Infinite-width NNGP/NTK recursions: depth-L MLP (two independent formulations), residual network,
   Elman RNN (tied or untied, last-state or mean-pooled readout), and a residual block whose branch
   is built from its own skip input. In ``numpy_reference_kernels.py``.
3. Finite-width networks with manual backprop (init / apply / empirical kernels) for the Monte Carlo
   self-check of every recursion. In ``numpy_reference_networks.py``.

Every kernel function takes a batch ``x1`` (N1, ...) and optionally ``x2`` (N2, ...), and returns
``Kernels(nngp, ntk)`` with N1 x N2 arrays (``x2=None`` means ``x2 = x1``). The batches are
stacked and every quantity is computed on the stacked batch, so the per-input variances are, bit
for bit, the diagonal of the pair covariances (THEORY §10, trap 7): identical inputs get
correlation exactly 1.

This module gathers the three parts under one name: ``import numpy_reference as ref``.
"""

from __future__ import annotations

from numpy_reference_kernels import (
    block_kernels,
    mlp_kernels,
    mlp_kernels_backward,
    resnet_kernels,
    rnn_kernels,
)
from numpy_reference_maps import (
    MAPS,
    POINTWISE,
    Kernels,
    V,
    Vd,
    erf_deriv_map,
    erf_nngp,
    erf_plus_relu_deriv_map,
    erf_plus_relu_nngp,
    identity_deriv_map,
    identity_nngp,
    relu_erf_deriv_map,
    relu_erf_nngp,
    relu_nngp,
    step_map,
)
from numpy_reference_networks import (
    activation,
    block_apply,
    block_empirical,
    block_init,
    mlp_apply,
    mlp_empirical,
    mlp_init,
    resnet_apply,
    resnet_empirical,
    resnet_init,
    rnn_apply,
    rnn_empirical,
    rnn_init,
)

__all__ = [
    "Kernels",
    "MAPS",
    "POINTWISE",
    "V",
    "Vd",
    "activation",
    "block_apply",
    "block_empirical",
    "block_init",
    "block_kernels",
    "erf_deriv_map",
    "erf_nngp",
    "erf_plus_relu_deriv_map",
    "erf_plus_relu_nngp",
    "identity_deriv_map",
    "identity_nngp",
    "mlp_apply",
    "mlp_empirical",
    "mlp_init",
    "mlp_kernels",
    "mlp_kernels_backward",
    "relu_erf_deriv_map",
    "relu_erf_nngp",
    "relu_nngp",
    "resnet_apply",
    "resnet_empirical",
    "resnet_init",
    "resnet_kernels",
    "rnn_apply",
    "rnn_empirical",
    "rnn_init",
    "rnn_kernels",
    "step_map",
]
