"""Training dynamics predicted from the NTK against a wide finite network trained by gradient
descent, on the scikit-learn diabetes regression data (442 patients, 10 features; no downloads).

A depth-2 ReLU MLP (examples/mlp.tp with L = 2) at width 1024 (`Compiled.finite`, NTK
parameterization) is trained by full-batch gradient descent on ½·mean((f − y)²) — neural-tangents'
loss — over 80 training points (features and target standardised).
`tpcompile.predict.gradient_descent_mse`, given the infinite-width NTK and the finite network's own
outputs at initialisation, predicts f(t) at every step for the training points and 100 test points.
The plot (docs/dynamics.png) shows predicted and actual trajectories of a few points and the train /
test loss; the first table the largest deviation |predicted − actual| over all train / test points
at a few steps, the second the test R² of the finite network, of its prediction, and of the kernel
estimators `tpcompile.sklearn.NTKRegressor` / `NNGPRegressor` (the infinite ensemble's mean).

Runs in about a minute on 2 cores (TPCOMPILE_EXAMPLE_QUICK=1: width 256, 200 steps, ~20 s).
Usage: python examples/dynamics.py [--out docs/dynamics.png]
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
import tpcompile.predict  # noqa: E402
from tpcompile.sklearn import NNGPRegressor, NTKRegressor  # noqa: E402

MLP = (Path(__file__).resolve().parent / "mlp.tp").read_text()
PARAMS = {"L": 2}  # depth 2

QUICK = bool(os.environ.get("TPCOMPILE_EXAMPLE_QUICK"))
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "dynamics.png"


def r2(y, f) -> float:
    return float(1.0 - np.sum((y - f) ** 2) / np.sum((y - np.mean(y)) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = parser.parse_args()
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(x))
    n_train, n_test = 80, 100
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    x_tr, x_te = (x[tr] - mu) / sd, (x[te] - mu) / sd
    y_mu, y_sd = y[tr].mean(), y[tr].std()
    y_tr, y_te = (y[tr] - y_mu) / y_sd, (y[te] - y_mu) / y_sd
    width, steps = (256, 200) if QUICK else (1024, 2000)

    t0 = time.perf_counter()
    compiled = tpcompile.compile(MLP, params=PARAMS)
    k_dd = compiled.kernel_fn(x_tr, None, "ntk")
    k_td = compiled.kernel_fn(x_te, x_tr, "ntk")
    # Learning rate: a fifth of the stability limit 2m/λ_max of the linearised dynamics
    # (m = n_train), so that gradient descent stays close to the gradient flow the prediction
    # describes (per step, the top eigendirection shrinks by 1 − 0.4 instead of e^{−0.4}).
    lr = 0.2 * 2 * n_train / float(jnp.linalg.eigvalsh(k_dd)[-1])

    net = compiled.finite(width, data_dim=x.shape[1])
    params = net.init(jax.random.PRNGKey(0))
    loss_fn = lambda p: 0.5 * jnp.mean((net.apply(p, x_tr) - y_tr) ** 2)  # noqa: E731
    grad = jax.grad(loss_fn)

    @jax.jit
    def run(p, n):  # n GD steps
        def body(_, p):
            return jax.tree.map(lambda a, g: a - lr * g, p, grad(p))

        return jax.lax.fori_loop(0, n, body, p)

    table_steps = [0, 10, 100, 200] if QUICK else [0, 10, 100, 1000, 2000]
    record = np.unique(np.r_[0, np.geomspace(1, steps, 40).astype(int), table_steps])
    actual_tr, actual_te = [], []
    done = 0
    for s in record:
        params = run(params, int(s - done))
        done = int(s)
        actual_tr.append(np.asarray(net.apply(params, x_tr)))
        actual_te.append(np.asarray(net.apply(params, x_te)))
    actual_tr, actual_te = np.array(actual_tr), np.array(actual_te)
    t_finite = time.perf_counter() - t0

    # The prediction: gradient flow with the infinite-width NTK, from the finite network's f(0);
    # with learning_rate=lr the time unit is one gradient-descent step.
    predict_fn = tpcompile.predict.gradient_descent_mse(k_dd, y_tr, learning_rate=lr)
    pred_tr, pred_te = predict_fn(record, actual_tr[0], actual_te[0], k_td)
    pred_tr, pred_te = np.asarray(pred_tr), np.asarray(pred_te)

    print(f"diabetes, {n_train} train / {n_test} test points; MLP depth 2, width {width}, "
          f"lr {lr:.3g}, {steps} GD steps ({t_finite:.1f} s)")  # fmt: skip
    print("\nDeviation |predicted − actual|, max (rms) over the train / test points; f, y ~ 1")
    print("\n| GD step | dev. train      | dev. test       | train loss actual / predicted |")
    print("|--------:|----------------:|----------------:|------------------------------:|")
    for s in table_steps:
        i = int(np.searchsorted(record, s))
        d_tr, d_te = np.abs(pred_tr[i] - actual_tr[i]), np.abs(pred_te[i] - actual_te[i])
        dev_tr = f"{d_tr.max():.4f} ({np.sqrt(np.mean(d_tr**2)):.4f})"
        dev_te = f"{d_te.max():.4f} ({np.sqrt(np.mean(d_te**2)):.4f})"
        loss_a = 0.5 * np.mean((actual_tr[i] - y_tr) ** 2)
        loss_p = 0.5 * np.mean((pred_tr[i] - y_tr) ** 2)
        losses = f"{loss_a:13.4f} / {loss_p:<13.4f}"
        print(f"| {record[i]:7d} | {dev_tr:>15} | {dev_te:>15} | {losses} |")

    rows = [
        (f"finite MLP, width {width}, {steps} GD steps", r2(y_te, actual_te[-1])),
        (f"NTK prediction of that network, {steps} steps", r2(y_te, pred_te[-1])),
    ]
    # Interpolating 80 noisy targets overfits (see the test loss in the plot): early stopping or
    # a ridge (diag_reg, relative to the mean diagonal) does better.
    estimators = [
        ("NTKRegressor, t = ∞", NTKRegressor(MLP, params=PARAMS)),
        ("NNGPRegressor, t = ∞", NNGPRegressor(MLP, params=PARAMS)),
        (f"NTKRegressor, t = {steps} steps", NTKRegressor(MLP, params=PARAMS, t=steps * lr)),
        ("NTKRegressor, t = 20 steps (early stop)", NTKRegressor(MLP, params=PARAMS, t=20 * lr)),
        ("NTKRegressor, t = ∞, diag_reg = 1", NTKRegressor(MLP, params=PARAMS, diag_reg=1.0)),
        ("NNGPRegressor, t = ∞, diag_reg = 1", NNGPRegressor(MLP, params=PARAMS, diag_reg=1.0)),
    ]
    for label, est in estimators:
        rows.append((label, r2(y_te, est.fit(x_tr, y_tr).predict(x_te))))
    print("\n| diabetes, test R²                              |     R² |")
    print("|------------------------------------------------|-------:|")
    for label, value in rows:
        print(f"| {label:<46} | {value:6.3f} |")

    plot(args.out, record, actual_tr, actual_te, pred_tr, pred_te, y_tr, y_te, width)
    print(f"\nwrote {args.out}")


def plot(out, record, actual_tr, actual_te, pred_tr, pred_te, y_tr, y_te, width) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.maximum(record, 0.5)  # step 0 drawn at 0.5 on the log axis
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, act, pred, target, what in (
        (axes[0], actual_tr, pred_tr, y_tr, "training"),
        (axes[1], actual_te, pred_te, y_te, "test"),
    ):
        for j, c in zip(range(4), colors, strict=False):
            ax.plot(steps, act[:, j], "o", ms=3.5, color=c)
            ax.plot(steps, pred[:, j], "-", color=c, lw=1.3)
            ax.axhline(target[j], color=c, ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("gradient-descent step (step 0 at 0.5)")
        ax.set_ylabel("f(x)  (standardised target units)")
        ax.set_title(f"4 {what} points")
    handles = [
        plt.Line2D([], [], marker="o", ls="", color="k", ms=3.5, label=f"finite, width {width}"),
        plt.Line2D([], [], ls="-", color="k", label="NTK prediction"),
        plt.Line2D([], [], ls=":", color="k", label="target y"),
    ]  # fmt: skip
    axes[0].legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 0.12), fontsize=8)
    ax = axes[2]
    for act, pred, target, what, c in (
        (actual_tr, pred_tr, y_tr, "train", colors[0]),
        (actual_te, pred_te, y_te, "test", colors[1]),
    ):
        ax.plot(steps, 0.5 * np.mean((act - target) ** 2, 1), "o", ms=3.5, color=c,
                label=f"{what} loss, finite net")  # fmt: skip
        ax.plot(steps, 0.5 * np.mean((pred - target) ** 2, 1), "-", color=c,
                label=f"{what} loss, NTK prediction")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gradient-descent step (step 0 at 0.5)")
    ax.set_ylabel("½·mean((f − y)²)")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    fig.suptitle("Diabetes (80 training points): finite ReLU MLP trained by gradient descent "
                 "vs. tpcompile.predict.gradient_descent_mse")  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
