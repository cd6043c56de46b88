"""`tpcompile.sklearn`: scikit-learn's estimator checks, agreement with `tpcompile.predict`,
programs from text or `.tp` files, indexed inputs, Pipeline / GridSearchCV, and the digits
acceptance test (`-m slow`). Skipped when scikit-learn is not installed (an optional extra)."""

from __future__ import annotations

import importlib
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from predict_reference import MLP  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from tpcompile import TPError  # noqa: E402
from tpcompile.predict import gradient_descent_mse_ensemble  # noqa: E402
from tpcompile.sklearn import NNGPRegressor, NTKClassifier, NTKRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

RNN = """
param T = 3
input x[1..T]
weight U ~ N(0, 1.0)
weight W ~ N(0, 1.0)
bias b ~ N(0, 0.1)
h[1] = U @ x[1] + b
for t in 2..T {
    h[t] = W @ relu(h[t-1]) + U @ x[t] + b
}
output relu(h[T])
"""


# Every check of scikit-learn's estimator suite, none skipped by us (scikit-learn itself skips
# the pandas and array-API checks when those libraries are not installed). sklearn's checks use
# 2-D X, hence an MLP program.
@parametrize_with_checks([NTKRegressor(MLP), NNGPRegressor(MLP, t=100.0), NTKClassifier(MLP)])
def test_sklearn_estimator_checks(estimator: object, check: object) -> None:
    check(estimator)  # type: ignore[operator]


def _data(n: int = 30, m: int = 7, d: int = 4, outputs: int = 2) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(5)
    return (rng.normal(size=(n, d)), rng.normal(size=(m, d)), rng.normal(size=(n, outputs)))


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("t", [None, 3.0])
def test_regressor_is_the_ensemble_mean(kernel: str, t: float | None) -> None:
    x, x_test, y = _data()
    est = NTKRegressor(MLP, t=t, diag_reg=0.01, kernel=kernel).fit(x, y)
    mean = gradient_descent_mse_ensemble(est.compiled_.kernel_fn, x, y, diag_reg=0.01)(
        t, x_test, kernel
    )
    np.testing.assert_allclose(est.predict(x_test), mean, rtol=1e-9, atol=1e-12)
    # one output: (n,) targets; m = y.size = n, so at finite t the time scale is not that of y
    one = NTKRegressor(MLP, t=t, diag_reg=0.01, kernel=kernel).fit(x, y[:, 0])
    mean = gradient_descent_mse_ensemble(est.compiled_.kernel_fn, x, y[:, :1], diag_reg=0.01)(
        t, x_test, kernel
    )
    assert one.predict(x_test).shape == (len(x_test),)
    np.testing.assert_allclose(one.predict(x_test), mean[:, 0], rtol=1e-9, atol=1e-12)


def test_nngp_regressor_defaults_to_the_nngp() -> None:
    x, x_test, y = _data()
    a = NNGPRegressor(MLP).fit(x, y).predict(x_test)
    b = NTKRegressor(MLP, kernel="nngp").fit(x, y).predict(x_test)
    np.testing.assert_array_equal(a, b)
    assert NNGPRegressor(MLP).get_params()["kernel"] == "nngp"


def test_classifier_targets_and_decisions() -> None:
    x, x_test, y = _data()
    labels = np.array(["cat", "dog", "emu"])[np.argmax(y @ np.ones((2, 3)) + x[:, :3], axis=1)]
    clf = NTKClassifier(MLP, t=50.0).fit(x, labels)
    assert list(clf.classes_) == sorted(set(labels))
    f = clf.decision_function(x_test)
    np.testing.assert_array_equal(clf.predict(x_test), clf.classes_[np.argmax(f, axis=1)])
    # centred one-hot targets; the argmax is that of plain one-hot targets as well
    onehot = (labels[:, None] == clf.classes_).astype(float)
    reg = NTKRegressor(MLP, t=50.0).fit(x, onehot)
    np.testing.assert_allclose(
        f,
        reg.predict(x_test)
        - reg.predict(x_test).mean(1, keepdims=True)
        + clf.decision_function(x_test).mean(1, keepdims=True),
        rtol=1e-9,
        atol=1e-12,
    )
    np.testing.assert_array_equal(np.argmax(reg.predict(x_test), axis=1), np.argmax(f, axis=1))
    binary = NTKClassifier(MLP).fit(x, labels == "cat")
    assert binary.decision_function(x_test).shape == (len(x_test),)
    np.testing.assert_array_equal(binary.predict(x_test), binary.decision_function(x_test) > 0)


def test_program_from_a_file_or_text(tmp_path: Path) -> None:
    x, x_test, y = _data()
    path = tmp_path / "net.tp"
    path.write_text(MLP)
    want = NTKRegressor(MLP).fit(x, y).predict(x_test)
    for program in (path, str(path)):
        np.testing.assert_array_equal(NTKRegressor(program).fit(x, y).predict(x_test), want)
    example = NTKRegressor(str(ROOT / "examples" / "mlp.tp"), params={"L": 2}).fit(x, y)
    assert example.compiled_.params == {"L": 2}
    with pytest.raises(FileNotFoundError, match="no such .tp file"):
        NTKRegressor(str(tmp_path / "missing.tp")).fit(x, y)
    with pytest.raises(TPError):
        NTKRegressor("input x\noutput relu(x)\n").fit(x, y)  # data only through a matmul


def test_indexed_input_takes_three_dimensional_x() -> None:
    rng = np.random.default_rng(2)
    x, x_test, y = rng.normal(size=(12, 3, 2)), rng.normal(size=(5, 3, 2)), rng.normal(size=12)
    est = NTKRegressor(RNN, diag_reg=0.0).fit(x, y)
    assert est.predict(x_test).shape == (5,)
    np.testing.assert_allclose(est.predict(x), y, atol=1e-8)  # t = ∞ interpolates
    with pytest.raises(TPError, match="needs"):
        NTKRegressor(RNN).fit(x.reshape(12, 6), y)


def test_options_are_checked_at_fit() -> None:
    x, _, y = _data()
    for bad in ({"kernel": "rbf"}, {"t": -1.0}, {"diag_reg": -0.1}, {"t": "soon"}):
        est = NTKRegressor(MLP, **bad)  # the constructor only stores (sklearn's contract)
        with pytest.raises(ValueError):
            est.fit(x, y)


def test_clone_pickle_and_compiled_is_not_a_parameter() -> None:
    x, x_test, y = _data()
    est = NTKRegressor(MLP, params={"L": 3}, t=2.0).fit(x, y)
    assert set(est.get_params()) == {"program", "params", "t", "diag_reg", "kernel"}
    fresh = clone(est)
    assert not hasattr(fresh, "compiled_") and fresh.get_params() == est.get_params()
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(again.predict(x_test), est.predict(x_test), rtol=1e-12)


def test_pipeline_and_grid_search() -> None:
    x, x_test, y = _data(n=24)
    pipe = make_pipeline(StandardScaler(), NTKRegressor(MLP))
    grid = GridSearchCV(
        pipe, {"ntkregressor__t": [1.0, None], "ntkregressor__kernel": ["ntk", "nngp"]}, cv=2
    )
    grid.fit(x, y[:, 0])
    assert set(grid.best_params_) == {"ntkregressor__t", "ntkregressor__kernel"}
    assert grid.predict(x_test).shape == (len(x_test),)
    labels = (y[:, 0] > 0).astype(int)
    clf = GridSearchCV(NTKClassifier(MLP), {"diag_reg": [1e-6, 1e-1]}, cv=2).fit(x, labels)
    assert 0.0 <= clf.score(x_test, labels[: len(x_test)]) <= 1.0


def test_import_without_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now fails
    for name in [m for m in sys.modules if m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "tpcompile.sklearn")
    with pytest.raises(ImportError, match=r"pip install tpcompile\[sklearn\]"):
        importlib.import_module("tpcompile.sklearn")


DIGITS_MLP = """
input x
weight U ~ N(0, 2.0)
weight W[2..3] ~ N(0, 2.0)
bias b[1..3] ~ N(0, 0.1)
h[1] = U @ x + b[1]
for l in 2..3 {
    h[l] = W[l] @ relu(h[l-1]) + b[l]
}
output relu(h[3])
"""


@pytest.mark.slow
def test_digits_accuracy() -> None:
    # Acceptance (issue 11): a 3-layer ReLU MLP's NTK classifier (t = ∞) on scikit-learn's
    # digits, inputs / 16, a 70/30 split: at least 0.98 test accuracy (0.9926 measured).
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16, y, test_size=0.3, random_state=0)
    start = time.perf_counter()
    accuracy = NTKClassifier(DIGITS_MLP).fit(x_train, y_train).score(x_test, y_test)
    print(f"digits: accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f} s")
    assert accuracy >= 0.98
