"""`tpcompile predict`: the ensemble mean (and covariance) at several times, from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tpcompile
from tpcompile import predict
from tpcompile.cli import main

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "examples" / "mlp.tp"


@pytest.fixture()
def data(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    arrays = {"train": rng.normal(size=(12, 4)), "test": rng.normal(size=(3, 4))}
    arrays["y"] = np.sin(arrays["train"][:, 0])
    paths = {name: tmp_path / f"{name}.npy" for name in arrays}
    for name, path in paths.items():
        np.save(path, arrays[name])
    return paths


def test_predict_writes_means_and_covariances(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.npz"
    args = ["predict", str(MLP), "--train", str(data["train"]), "--y", str(data["y"])]
    args += ["--test", str(data["test"]), "--t", "0,5,inf", "--cov", "-o", str(out)]
    assert main(args) == 0
    with np.load(out) as p:
        t, mean, cov = p["t"], p["mean"], p["covariance"]
    assert t.tolist() == [0, 5, np.inf] and mean.shape == (3, 3) and cov.shape == (3, 3, 3)
    np.testing.assert_array_equal(mean[0], 0.0)  # t = 0: the prior mean
    # The same numbers as the Python API (float64 both ways).
    c = tpcompile.compile(MLP.read_text())
    x, y, xt = (np.load(data[k]) for k in ("train", "y", "test"))
    want = predict.gradient_descent_mse_ensemble(c.kernel_fn, x, y)(
        t=np.array([0, 5, np.inf]), x_test=xt, get="ntk", compute_cov=True
    )
    np.testing.assert_allclose(mean, np.asarray(want.mean), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cov, np.asarray(want.covariance), rtol=1e-12, atol=1e-14)


def test_predict_on_the_training_set_interpolates_at_infinity(
    data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["predict", str(MLP), "--train", str(data["train"]), "--y", str(data["y"])]
    assert main([*args, "--t", "inf"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    # t = ∞ on the training set is kernel regression: it interpolates to rounding
    assert row[0] == "inf" and float(row[2]) < 1e-8


def test_predict_errors_are_clean(data: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    args = ["predict", str(MLP), "--train", str(data["train"]), "--y", str(data["test"])]
    assert main(args) == 1
    assert "y_train has shape (3, 4)" in capsys.readouterr().err
    assert main([*args[:5], str(data["y"]), "--t", "1,-2"]) == 1
    assert "--t needs times >= 0" in capsys.readouterr().err
