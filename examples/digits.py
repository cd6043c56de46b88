"""Infinite-width kernels against finite networks on two scikit-learn data sets (no downloads).

Table 1, sklearn digits (1797 8×8 images, 10 classes; pixels / 16; train_test_split(test_size=0.3,
random_state=0): 1257 train, 540 test). For examples/mlp.tp and examples/resnet.tp:

* kernel rows: `tpcompile.sklearn.NTKClassifier` with kernel="ntk" and "nngp" at t = ∞ — the
  mean prediction of the infinitely wide network trained by gradient flow on the centred one-hot
  targets (0.9 / −0.1) with the NTK, resp. of its readout alone (the NNGP posterior mean);
* finite rows: the same program at width 256 (`Compiled.finite`, NTK parameterization) trained by
  full-batch gradient descent (`jax.grad`) on the same centred one-hot targets and the same loss
  ½·mean((f − y)²). One scalar-output network per class would cost 10× the trunk; instead the
  10 classes share the trunk and each has its own readout vector (10 readouts, vmapped) — the
  multi-output network neural-tangents' `stax.Dense(10)` readout builds, whose infinite-width NTK
  is Θ ⊗ I, i.e. exactly the kernel rows' one-kernel-per-class regression.

Table 2, breast cancer (569 samples, 30 features standardised, binary; the same split): the NTK
and NNGP classifiers and a finite MLP with one scalar output trained on ±1 targets.

A 2-D CNN (examples/cnn1d.tp in two dimensions) is not in the tables: its kernel couples every
pair of the 64 pixel positions per layer and is not yet compilable at this size.

Runs in about a minute on 2 cores (TPCOMPILE_EXAMPLE_QUICK=1: subsets, a smaller finite network and
fewer steps, ~25 s). Usage: python examples/digits.py
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import tpcompile  # noqa: E402
from tpcompile.sklearn import NTKClassifier  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent
MLP = (EXAMPLES / "mlp.tp").read_text()  # depth 3, relu (its default params)
RESNET = (EXAMPLES / "resnet.tp").read_text()  # 4 residual blocks, alpha = 0.7

PROGRAMS = {"MLP (depth 3, relu)": MLP, "ResNet (4 blocks)": RESNET}
QUICK = bool(os.environ.get("TPCOMPILE_EXAMPLE_QUICK"))
READOUT = "readout"  # the readout vector's key in FiniteNetwork.init's parameter dict


def train_finite(
    program: str, x_tr, y_tr, x_te, width: int, steps: int, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Full-batch gradient descent on ½·mean((f − y)²) for a finite network of `program` with
    y_tr.shape[1] readouts sharing the trunk. Returns (test outputs, learning rate).

    The finite network trains in float32 (twice as fast on a CPU; its outputs are O(1) and the
    loss needs no more), the kernels are float64."""
    net = tpcompile.compile(program).finite(width, data_dim=x_tr.shape[1])
    heads = y_tr.shape[1]
    f32 = jnp.float32
    x_tr, y_tr, x_te = (jnp.asarray(a, f32) for a in (x_tr, y_tr, x_te))
    key_trunk, key_heads = jax.random.split(jax.random.PRNGKey(seed))
    params = net.init(key_trunk, dtype=f32)
    params[READOUT] = jax.random.normal(key_heads, (heads, width), f32)  # one readout per output

    def outputs(p, x):  # (N, heads); vmap batches only the readout, the trunk runs once
        return jax.vmap(lambda v: net.apply({**p, READOUT: v}, x), out_axes=1)(p[READOUT])

    def loss(p):
        return 0.5 * jnp.mean((outputs(p, x_tr) - y_tr) ** 2)

    # Step size from the largest eigenvalue of the empirical NTK at init, via the Gauss-Newton
    # bound: the loss is stable for lr < 2 / λ_max(J Jᵀ / m); take a fraction of it.
    grad = jax.jit(jax.value_and_grad(loss))
    lr = learning_rate(outputs, params, x_tr, y_tr.size)

    @jax.jit
    def step(p):
        value, g = grad(p)
        return jax.tree.map(lambda a, b: a - lr * b, p, g), value

    for _ in range(steps):
        params, value = step(params)
    return np.asarray(outputs(params, x_te)), lr


def learning_rate(outputs, params, x, m: int, fraction: float = 0.9) -> float:
    """`fraction` · 2 / λ_max of the Hessian of ½·mean((f − y)²) in its Gauss-Newton form J Jᵀ/m,
    λ_max by power iteration with Jacobian-vector products (no Jacobian is formed)."""

    @jax.jit
    def apply_ggn(p, u):  # u (N, heads) -> J Jᵀ u / m; params are arguments, not constants
        f = lambda q: outputs(q, x)  # noqa: E731
        _, vjp = jax.vjp(f, p)
        (g,) = vjp(u)
        return jax.jvp(f, (p,), (g,))[1] / m

    u = jax.random.normal(jax.random.PRNGKey(1), (x.shape[0], params[READOUT].shape[0]), x.dtype)
    lam = 0.0
    for _ in range(20):
        w = apply_ggn(params, u)
        lam = float(jnp.linalg.norm(w) / jnp.linalg.norm(u))
        u = w / jnp.linalg.norm(w)
    return fraction * 2.0 / lam


def run_table(title, x_tr, y_tr, x_te, y_te, programs, width, steps) -> list[tuple]:
    classes = np.unique(y_tr)
    rows = []
    for name, program in programs.items():
        for kernel in ("ntk", "nngp"):
            t0 = time.perf_counter()
            clf = NTKClassifier(program, kernel=kernel).fit(x_tr, y_tr)
            acc = clf.score(x_te, y_te)
            rows.append((name, f"{kernel.upper()} kernel, t = ∞", acc, time.perf_counter() - t0))
        t0 = time.perf_counter()
        if len(classes) == 2:  # one scalar output on ±1 targets
            targets = np.where(y_tr == classes[1], 1.0, -1.0)[:, None]
        else:  # the centred one-hot targets NTKClassifier regresses
            targets = (y_tr[:, None] == classes).astype(float) - 1.0 / len(classes)
        out, lr = train_finite(program, x_tr, targets, x_te, width, steps)
        pred = classes[(out[:, 0] > 0).astype(int)] if len(classes) == 2 else classes[out.argmax(1)]
        label = f"finite, width {width}, {steps} GD steps"
        rows.append((name, label, float(np.mean(pred == y_te)), time.perf_counter() - t0))
        # The infinite-width NTK ensemble trained for the same time: `steps` steps of size lr on
        # the mean over targets.size entries; NTKClassifier's loss averages over n·C entries, so
        # its clock runs targets.shape[1] / C times as fast (1 for digits, ½ for binary).
        t0 = time.perf_counter()
        t_same = steps * lr * len(classes) / targets.shape[1]
        acc = NTKClassifier(program, t=t_same).fit(x_tr, y_tr).score(x_te, y_te)
        label = f"NTK kernel, t = {steps} GD steps"
        rows.append((name, label, acc, time.perf_counter() - t0))
    print(f"\n{title}")
    print(f"| {'model':<20} | {'kernel / finite':<34} | accuracy | seconds |")
    print(f"|{'-' * 22}|{'-' * 36}|---------:|--------:|")
    for name, how, acc, sec in rows:
        print(f"| {name:<20} | {how:<34} | {acc:8.4f} | {sec:7.1f} |")
    return rows


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=0.3, random_state=0)
    width, steps = (64, 30) if QUICK else (256, 300)
    if QUICK:
        x_tr, y_tr, x_te, y_te = x_tr[:200], y_tr[:200], x_te[:100], y_te[:100]
    run_table(
        f"digits: {len(x_tr)} train, {len(x_te)} test, 10 classes",
        x_tr, y_tr, x_te, y_te, PROGRAMS, width, steps,
    )  # fmt: skip

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    if QUICK:
        x_tr, y_tr, x_te, y_te = x_tr[:150], y_tr[:150], x_te[:100], y_te[:100]
    run_table(
        f"breast cancer: {len(x_tr)} train, {len(x_te)} test, 2 classes",
        x_tr, y_tr, x_te, y_te, {"MLP (depth 3, relu)": MLP}, width, steps,
    )  # fmt: skip


if __name__ == "__main__":
    main()
