"""`tpcompile.predict`: predictions of wide networks from their kernels — neural-tangents'
`nt.predict`, on top of `kernel_fn` (DESIGN §5: the layer above the compiler; it uses nothing of
tpcompile but `kernel_fn`'s call shape and `tpcompile.errors`).

Same names, arguments and results as neural-tangents 0.6 (`neural_tangents/_src/predict.py`), so
code written for `nt.predict` changes one import:

    import tpcompile, tpcompile.predict
    c = tpcompile.compile(open("examples/mlp.tp").read())
    k_dd = c.kernel_fn(x_train, None, "ntk")
    k_td = c.kernel_fn(x_test, x_train, "ntk")
    predict_fn = tpcompile.predict.gradient_descent_mse(k_dd, y_train)
    fx_train_t, fx_test_t = predict_fn(t, fx_train_0, fx_test_0, k_td)

* `gradient_descent_mse` (dynamics.py): one network's outputs under gradient flow, from its NTK;
* `gradient_descent_mse_ensemble` (dynamics.py): mean and covariance over initialisations of
  infinitely wide networks trained for time t;
* `gp_inference` (gp.py): the NNGP posterior, the t = ∞ NTK ensemble, the NTK-GP;
* `Gaussian(mean, covariance)`.

Conventions (neural-tangents'): loss ½·mean((f − y)²) over the m = y_train.size entries of y,
so df/dt = −η Θ (f − y) / m; `t=None` is t = ∞ (a Cholesky solve), finite t an
eigendecomposition with negative eigenvalues clipped at 0; `diag_reg` adds
diag_reg · trace(K)/n · I (diag_reg · I with diag_reg_absolute_scale=True). Targets are (n, k),
or (n,) for one output (an extension). Inputs may be NumPy or JAX arrays; results are always JAX
arrays, in the dtype of the kernels (float64 under x64). Bad input raises `PredictInputError`
(a `tpcompile.errors.KernelInputError` and a `ValueError`) with a hint — never NaN.
"""

from tpcompile.predict.arrays import PredictInputError
from tpcompile.predict.dynamics import gradient_descent_mse, gradient_descent_mse_ensemble
from tpcompile.predict.gp import Gaussian, gp_inference

__all__ = [
    "Gaussian",
    "PredictInputError",
    "gp_inference",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
]
