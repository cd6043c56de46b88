"""Gates and weights shared over recurrent steps: the class of program that crashed the GRU.

The GRU at T >= 3 met E[f(a) g(b1, b2)] with one variable on one side and two on the other;
tensor Gauss-Hermite broadcast the means over the variable axis (length 1 against 2 gave a mean
of length 4 for 3 variables) and crashed. The regression tests pin that case down at the
runtime level (exact answers for polynomials) and through the GRU program; the property tests
compile random gated recurrent programs (`program_strategies.gated_recurrent_programs`) and check
what any correct kernel satisfies: the shapes, finite values, and that an entry does not depend on
the batch it is computed in (common random numbers make Monte Carlo entries batch-independent).
The slow test compares a few programs with finite-width networks (`test_finite`'s criterion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from program_strategies import gated_recurrent_programs
from test_finite import MC_ALLOWANCE, assert_agrees, kernel_samples

import tpcompile
from tpcompile import runtime as rt
from tpcompile.finite.network import finite
from tpcompile.inputs import demo_inputs

ROOT = Path(__file__).resolve().parent.parent
# Rounding differences between batch shapes (chunk sizes, XLA's fusion) are ~1e-16 per quantity;
# closed forms near correlation 1 (the diagonal) amplify them like sqrt(eps) ~ 1e-8. An indexing
# or shape bug, or a Monte Carlo stream that depends on the batch, is O(1e-2) or more.
BATCH_RTOL = 1e-6


def exact_triple(cov: np.ndarray, mean: np.ndarray) -> float:
    """E[x0 x1 x2] for x ~ N(mean, cov) (Isserlis with means)."""
    m0, m1, m2 = mean
    return m0 * m1 * m2 + m0 * cov[1, 2] + m1 * cov[0, 2] + m2 * cov[0, 1]


@pytest.mark.parametrize("split", [1, 2])
def test_tensor_pair_with_one_variable_against_two(split: int) -> None:
    """The GRU crash: k = 1 against m = 2 (and 2 against 1), with nonzero means and a batch."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 3, 3))
    cov = a @ np.swapaxes(a, -1, -2) / 3 + 0.1 * np.eye(3)
    mean = np.array([0.3, -0.5, 0.8])
    f = (lambda u: u) if split == 1 else (lambda u0, u1: u0 * u1)
    g = (lambda w0, w1: w0 * w1) if split == 1 else (lambda w: w)
    k = split
    est = rt.tensor_pair(
        f,
        g,
        cov[:, :k, :k],
        cov[:, :k, k:],
        cov[:, k:, k:],
        tuple(mean[:k]),
        tuple(mean[k:]),
        degree=8,
    )
    want = [exact_triple(c, mean) for c in cov]
    assert est.value.shape == (5,)
    np.testing.assert_allclose(est.value, want, rtol=1e-12, atol=1e-13)  # exact for cubics
    mc = rt.mc_pair(f, g, cov[:, :k, :k], cov[:, :k, k:], cov[:, k:, k:], mean[:k], mean[k:])
    assert np.all(np.abs(np.asarray(mc.value) - want) <= 4.5 * np.asarray(mc.error))


def assert_batch_independent(c: tpcompile.Compiled, x: np.ndarray, x2: np.ndarray) -> None:
    """Shapes, finite values, and every entry equal to the entry computed in another batch. Few
    distinct batch shapes: each one compiles every numerical rule again."""
    k = c.kernel_fn(x)
    k12 = c.kernel_fn(x, x2)
    diag = c.kernel_fn(x[-1:])
    for name in ("nngp", "ntk"):
        full, cross = np.asarray(getattr(k, name)), np.asarray(getattr(k12, name))
        assert full.shape == (len(x), len(x)) and cross.shape == (len(x), len(x2))
        assert np.all(np.isfinite(full)) and np.all(np.isfinite(cross)), name
        tol = {"rtol": BATCH_RTOL, "atol": BATCH_RTOL * np.max(np.abs(full))}
        for i in range(len(x)):
            row = np.asarray(getattr(c.kernel_fn(x[i : i + 1], x2), name))
            np.testing.assert_allclose(row[0], cross[i], **tol, err_msg=f"{name} row {i}")
        alone = np.asarray(getattr(diag, name))[0, 0]
        np.testing.assert_allclose(alone, full[-1, -1], **tol, err_msg=f"{name} K(x, x)")


def fixed_examples(count: int) -> Any:
    """Hypothesis settings for a fixed, reproducible handful of generated programs."""
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def check_random_batches(source: str, samples: int, seed: int) -> None:
    c = tpcompile.compile(source, samples=samples)
    rng = np.random.default_rng(seed)
    shape = c.ir.input.shape
    assert_batch_independent(c, rng.normal(size=(3, *shape, 3)), rng.normal(size=(2, *shape, 3)))


@pytest.mark.slow  # ~60 s on 2 cores: XLA compiles every group of the GRU's numerics
def test_gru_three_steps_compiles_and_evaluates() -> None:
    """The reported crash: `tpcompile kernel gru.tp -D T=3` exited 3 (the demo inputs)."""
    source = (ROOT / "benchmarks" / "programs" / "gru.tp").read_text()
    c = tpcompile.compile(source, params={"T": 3}, samples=4096)
    x = demo_inputs(c.ir)
    assert_batch_independent(c, x, x[::-1][:2])


@seed(13)
@fixed_examples(2)
@given(gated_recurrent_programs(max_steps=2))
def test_random_gated_programs_evaluate_consistently(source: str) -> None:
    # Few Monte Carlo samples: the checks are exact up to rounding whatever the sample count.
    check_random_batches(source, samples=1024, seed=1)


@pytest.mark.slow
@seed(14)
@fixed_examples(10)
@given(gated_recurrent_programs(max_steps=4))
def test_random_gated_programs_longer(source: str) -> None:
    check_random_batches(source, samples=4096, seed=2)


@pytest.mark.slow
@seed(15)
@fixed_examples(2)
@given(gated_recurrent_programs(max_steps=3))
def test_random_gated_programs_agree_with_finite_networks(source: str) -> None:
    # test_finite's criterion (4.5 σ̂ plus the O(1/n) bias allowance) with its Monte Carlo
    # allowance: 2 programs x 2 kernels at ≤ 4.2e-4 each.
    c, n = tpcompile.compile(source), 1024
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, *c.ir.input.shape, 4))
    k = c.kernel_fn(x)
    extra = MC_ALLOWANCE if "rt.mc_" in c.source else 0.0
    nngp, ntk = kernel_samples(finite(c, n, 4), x)
    assert_agrees(nngp, k.nngp, n, f"NNGP of\n{source}", extra)
    assert_agrees(ntk, k.ntk, n, f"NTK of\n{source}", extra)
