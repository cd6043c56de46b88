"""runtime.angles.atan2 against NumPy's libm arctan2: every quadrant, the axes, signed zeros,
tiny angles (relative accuracy) and float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tpcompile.runtime.angles import atan2


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), np.finfo(float).tiny)))


def test_float64_within_a_few_ulps_everywhere() -> None:
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(size=20000), rng.normal(size=2000) * 1e-9])
    x = np.concatenate([rng.normal(size=20000), rng.normal(size=2000)])
    # tan(π/8), where the reduction switches, and 1 (the diagonal |x| = |y|), from both sides
    t = np.tan(np.pi / 8) * (1 + np.linspace(-1e-12, 1e-12, 101))
    y = np.concatenate([y, t, -t, 1 + np.linspace(-1e-12, 1e-12, 101)])
    x = np.concatenate([x, np.ones(101), -np.ones(101), np.ones(101)])
    with jax.enable_x64(True):
        got = np.asarray(atan2(jnp.asarray(y), jnp.asarray(x)))
    # a Taylor tail below 7.2e-17 of the angle plus the rounding of about 20 multiply-adds and
    # the reductions: a few ulps (2.2e-16 each)
    assert _relative(got, np.arctan2(y, x)) < 4 * np.finfo(float).eps


@pytest.mark.parametrize(
    ("y", "x"),
    [(0.0, 1.0), (-0.0, 1.0), (0.0, -1.0), (-0.0, -1.0), (0.0, 0.0), (-0.0, 0.0), (0.0, -0.0),
     (-0.0, -0.0), (1.0, 0.0), (-1.0, 0.0), (1e-300, 1.0), (1.0, 1e-300), (3.0, -3.0),
     (np.inf, 1.0), (1.0, np.inf)],
)  # fmt: skip
def test_special_points_as_libm(y: float, x: float) -> None:
    with jax.enable_x64(True):
        got = float(atan2(jnp.asarray(y), jnp.asarray(x)))
    want = float(np.arctan2(y, x))
    assert got == pytest.approx(want, rel=4e-16, abs=0.0)
    assert np.signbit(got) == np.signbit(want)


def test_float32_stays_float32_and_accurate() -> None:
    rng = np.random.default_rng(1)
    y, x = rng.normal(size=20000), rng.normal(size=20000)
    with jax.enable_x64(True):
        got = atan2(jnp.asarray(y, jnp.float32), jnp.asarray(x, jnp.float32))
    assert got.dtype == jnp.float32
    # exact on the float32 inputs up to float32 rounding of the result and of ~10 operations
    want = np.arctan2(y.astype(np.float32).astype(float), x.astype(np.float32).astype(float))
    assert _relative(np.asarray(got, float), want) < 4 * np.finfo(np.float32).eps
