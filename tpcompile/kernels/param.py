"""The parameterization: how a declared variance becomes trained parameters and multipliers.

Where this sits: read by the kernel analysis (`forward.py`, `backward.py`) and by the finite
network (`finite/network.py`), so both sides of `verify` agree by construction. DESIGN §3, the NTK
parameterization (neural-tangents' convention): every trained parameter is iid N(0, 1) and the
variances appear as multipliers,

    W ~ N(0, s2) on a vector of fan-in m:   sqrt(s2/m) · ω @ h
    b ~ N(mu, s2):                          mu + sqrt(s2) · β
    readout ~ N(0, sv2) + N(0, svb2):       f = sqrt(sv2/n) · v · h_out + sqrt(svb2) · β0

Only the NTK parameterization exists now; another one (standard, muP) is another instance whose
multipliers and kernel factors differ. Methods take exact sympy numbers or floats alike, and the
square root of the caller's number system where one is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Sqrt = Callable[[Any], Any]


@dataclass(frozen=True)
class Parameterization:
    """The multipliers of one parameterization, and the kernel factors they imply."""

    name: str

    # ---- the finite network: forward multipliers (`sqrt`: math.sqrt or sympy.sqrt) ----
    def weight_multiplier(self, std: Any, fan_in: int, sqrt: Sqrt) -> Any:
        """The multiplier of ω @ h for a weight of standard deviation `std` (sqrt of its
        variance) on a vector of fan-in m."""
        return std / sqrt(fan_in)

    def bias_multiplier(self, var: Any, sqrt: Sqrt) -> Any:
        """The multiplier of β for a bias of variance `var` (its mean is added as is)."""
        return sqrt(var)

    def readout_multiplier(self, var: Any, width: int, sqrt: Sqrt) -> Any:
        """The multiplier of v · h_out for a readout of variance `var` at width n."""
        return sqrt(var / width)

    # ---- the infinite-width kernels ----
    def forward_factor(self, var: Any) -> Any:
        """Cov(Z^{Wh}, Z^{Wh'}) = factor · E[Z^h Z^h'] (and the bias covariance itself)."""
        return var

    def ntk_factor(self, var: Any) -> Any:
        """The factor of a weight's or bias's NTK term: Σ_ij factor · D_ij · E[h_i h_j']."""
        return var

    def readout_seed(self, var: Any, sqrt: Sqrt) -> Any:
        """dZ of the output per unit backward Gaussian v: dy = sqrt(sv2) · v."""
        return sqrt(var)


NTK = Parameterization("ntk")

#: Every parameterization by name; a new one is a new entry (and its multipliers).
PARAMETERIZATIONS: dict[str, Parameterization] = {NTK.name: NTK}
