"""Pipeline step 5: the finite-width network of a program, and its empirical NNGP and NTK.

    source -> parse -> elaborate -> IR -> analyse -> emit -> kernel_fn     (the infinite width)
                                    └─> FiniteNetwork(program, n) -> empirical kernels (this file)

The same `ir.Program` the kernel compiler reads is instantiated at width n in the
parameterization of `kernels/param.py` (NTK, DESIGN §3, neural-tangents' convention): every
trained parameter is iid N(0, 1) and the variances appear as multipliers,

    W ~ N(0, s2) on a vector h of fan-in m:   sqrt(s2/m) · ω @ h      (m = d on data, n otherwise)
    b ~ N(mu, s2):                            mu + sqrt(s2) · β
    readout ~ N(0, sv2) + N(0, svb2):         f = sqrt(sv2/n) · v · h_out + sqrt(svb2) · β0

`FiniteNetwork.apply` is an interpreter over `program.instrs` with one rule per instruction type
(as Autodidax's `eval_jaxpr`), vectorised over the batch: every vector value is an array of shape
(N, n), a bias (shared by all examples) is (n,), a width average (C scalar) is (N, 1).

The empirical NTK is Σ over all parameters of J(a)·J(b). It is computed without materialising a
Jacobian: ω enters f only through its uses g_i = s·ω h_i, so ∂f(a)/∂ω = Σ_i s·dg_i(a) ⊗ h_i(a),
and ⟨∂f(a)/∂ω, ∂f(b)/∂ω⟩ = s² Σ_ij (dg_i(a)·dg_j(b)) (h_i(a)·h_j(b)). The dg_i are obtained for
every example at once by one reverse pass through zero "taps" added to each matmul output and
bias value (f(a) depends only on example a's row, width averages included), so memory is
O(uses · N · n), not O(N · n²).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import sympy

from tpcompile import ir
from tpcompile.codegen.jaxprint import lambdify_jax
from tpcompile.errors import TPError
from tpcompile.inputs import as_batch, default_float
from tpcompile.kernels.param import NTK, Parameterization

__all__ = [
    "READOUT",
    "READOUT_BIAS",
    "Features",
    "FiniteNetwork",
    "empirical_kernels",
    "finite",
    "sample_kernels",
]

#: Parameter names of the readout vector v and the readout bias β0. They contain characters a
#: `.tp` name cannot (`readout` is a keyword, `.` is not a name character), so they never clash
#: with a weight or bias of the program.
READOUT = "readout"
READOUT_BIAS = "readout.bias"

Params = dict[str, jax.Array]


class Features(NamedTuple):
    """Per-example quantities whose inner products give the empirical kernels.

    readout: (N, n) the Jacobian of f w.r.t. v, sqrt(sv2/n) · h_out;
    weight_grads[W]: (uses, N, n) s · ∂f/∂g_i for each use g_i = s · ω h_i of W;
    weight_inputs[W]: (uses, N, m) the vector h_i each use multiplies;
    bias_grads[b]: (N, n) sqrt(s2) · ∂f/∂b, the Jacobian of f w.r.t. β.
    """

    readout: jax.Array
    weight_grads: dict[str, jax.Array]
    weight_inputs: dict[str, jax.Array]
    bias_grads: dict[str, jax.Array]


def _float(x: sympy.Expr) -> float:
    """An exact sympy number as a float, once, at construction (never inside a traced function)."""
    return float(sympy.N(sympy.sympify(x), 30))


@functools.lru_cache(maxsize=4096)
def _lambdified(fn: sympy.Expr, args: tuple[str, ...]) -> Callable[..., jax.Array]:
    # Cached: `verify` builds the same program at several widths, and printing plus `exec` of
    # every H function is most of a network's construction time.
    return lambdify_jax(fn, [ir.symbol(a) for a in args])


class _Run:
    """The state of one forward pass: inputs, the environment of values, and what to record."""

    def __init__(
        self,
        params: Mapping[str, jax.Array],
        x: jax.Array,
        width: int,
        taps: Mapping[str, jax.Array] | None,
    ) -> None:
        self.params = params
        self.x = x  # (N, positions, d)
        self.width = width
        self.taps = taps or {}
        self.env: dict[str, jax.Array] = {}
        self.inputs: dict[str, jax.Array] = {}  # the vector each matmul multiplies, by output name

    def vector(self, name: str) -> jax.Array:
        """A vector value as (N, n): a bias alone is shared by the examples, so broadcast it."""
        value = self.env[name]
        return jnp.broadcast_to(value, (self.x.shape[0], self.width))

    def tap(self, name: str, value: jax.Array) -> jax.Array:
        # Adding a zero array changes nothing forward; its gradient is ∂f/∂value per example.
        return value + self.taps[name] if name in self.taps else value


Rule = Callable[["FiniteNetwork", Any, _Run], jax.Array]


def _matmul(net: FiniteNetwork, instr: ir.MatMul, run: _Run) -> jax.Array:
    h = run.vector(instr.arg)
    run.inputs[instr.out] = h
    omega = run.params[instr.weight].astype(h.dtype)
    return run.tap(instr.out, net.multiplier(instr.weight, net.width) * h @ omega.T)


def _embed(net: FiniteNetwork, instr: ir.Embed, run: _Run) -> jax.Array:
    h = run.x[:, instr.position, :]
    run.inputs[instr.out] = h
    omega = run.params[instr.weight].astype(h.dtype)
    return run.tap(instr.out, net.multiplier(instr.weight, h.shape[-1]) * h @ omega.T)


def _bias(net: FiniteNetwork, instr: ir.Bias, run: _Run) -> jax.Array:
    mean, std = net.bias_dist[instr.out]
    beta = run.params[instr.out].astype(run.x.dtype)
    return run.tap(instr.out, mean + std * beta)


def _lincomb(net: FiniteNetwork, instr: ir.LinComb, run: _Run) -> jax.Array:
    coefs, const = net.lincombs[instr.out]
    total = sum(c * run.env[v] for c, (_, v) in zip(coefs, instr.terms, strict=True))
    return total + const


def _nonlin(net: FiniteNetwork, instr: ir.Nonlin, run: _Run) -> jax.Array:
    return net.functions[instr.out](*(run.env[a] for a in instr.args))


def _moment(net: FiniteNetwork, instr: ir.Moment, run: _Run) -> jax.Array:
    # The width average of one example: a (N, 1) column that broadcasts against (N, n) vectors.
    values = net.functions[instr.out](*(run.env[a] for a in instr.args))
    values = jnp.broadcast_to(values, (run.x.shape[0], net.width))
    return jnp.mean(values, axis=-1, keepdims=True)


def _scalar(net: FiniteNetwork, instr: ir.ScalarDef, run: _Run) -> jax.Array:
    return net.functions[instr.out](*(run.env[a] for a in instr.args))


RULES: dict[type, Rule] = {
    ir.MatMul: _matmul,
    ir.Embed: _embed,
    ir.Bias: _bias,
    ir.LinComb: _lincomb,
    ir.Nonlin: _nonlin,
    ir.Moment: _moment,
    ir.ScalarDef: _scalar,
}


class FiniteNetwork:
    """The network of `program` at width `width`, in the NTK parameterization (DESIGN §3).

    `data_dim` (d) fixes the shape of the weights applied to data; it may instead be given to
    `init`. Parameters are a flat dict: weight name -> ω, (n, d) on data else (n, n); bias name
    -> β, (n,); `READOUT` -> v, (K n,) for K outputs (K = 1 but for `output flatten(...)`);
    `READOUT_BIAS` -> β0, () when the readout has a bias.
    """

    def __init__(
        self,
        program: ir.Program,
        width: int,
        data_dim: int | None = None,
        param: Parameterization = NTK,
    ) -> None:
        if int(width) != width or width < 1:
            raise TPError(f"the width must be a positive integer, got {width}")
        self.program = program
        self.width = int(width)
        self.data_dim = data_dim
        self.param = param
        # Every sympy number becomes a float here, once.
        self.scale = {w.name: math.sqrt(_float(w.var)) for w in program.weights}
        self.bias_dist: dict[str, tuple[float, float]] = {}
        self.lincombs: dict[str, tuple[tuple[float, ...], float]] = {}
        self.functions: dict[str, Callable[..., jax.Array]] = {}
        self.uses: dict[str, list[str]] = {w.name: [] for w in program.weights}
        for instr in program.instrs:
            match instr:
                case ir.Bias():
                    std = param.bias_multiplier(_float(instr.var), math.sqrt)
                    self.bias_dist[instr.out] = (_float(instr.mean), std)
                case ir.LinComb():
                    coefs = tuple(_float(c) for c, _ in instr.terms)
                    self.lincombs[instr.out] = (coefs, _float(instr.const))
                case ir.Nonlin() | ir.Moment() | ir.ScalarDef():
                    self.functions[instr.out] = _lambdified(instr.fn, instr.args)
                case ir.MatMul() | ir.Embed():
                    self.uses[instr.weight].append(instr.out)
            if type(instr) not in RULES:
                raise TPError(f"the finite network has no rule for {type(instr).__name__}")
        self.readout_scale = param.readout_multiplier(
            _float(program.readout.var), self.width, math.sqrt
        )
        self.readout_bias_std = param.bias_multiplier(_float(program.readout.bias_var), math.sqrt)
        self.biases = [i.out for i in program.instrs if isinstance(i, ir.Bias)]
        self._jit_cache: dict[tuple[str, bool], Callable[..., Any]] = {}

    def multiplier(self, weight: str, fan_in: int) -> float:
        """The forward multiplier of weight ω on a vector of this fan-in (`kernels/param.py`)."""
        return self.param.weight_multiplier(self.scale[weight], fan_in, math.sqrt)

    # ---- parameters ----------------------------------------------------------------------------

    def shapes(self, data_dim: int | None = None) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter, in the (fixed) order `init` draws them."""
        d = data_dim if data_dim is not None else self.data_dim
        n = self.width
        out: dict[str, tuple[int, ...]] = {}
        for w in self.program.weights:
            if w.on_data and d is None:
                raise TPError(
                    f"weight {w.name} is applied to data, so its shape needs the data dimension",
                    hint="give data_dim to FiniteNetwork(...) or to init(key, data_dim)",
                )
            out[w.name] = (n, int(d)) if w.on_data else (n, n)  # type: ignore[arg-type]
        out.update({b: (n,) for b in self.biases})
        out[READOUT] = (n * len(self.program.outputs),)
        if self.readout_bias_std != 0:
            out[READOUT_BIAS] = ()
        return out

    def init(self, key: jax.Array, data_dim: int | None = None, dtype: Any = None) -> Params:
        """Draw every parameter iid N(0, 1); dtype defaults to JAX's default float."""
        if dtype is None:  # not `dtype or ...`: a numpy dtype object is falsy (len 0)
            dtype = default_float()
        shapes = self.shapes(data_dim)
        keys = jax.random.split(key, len(shapes))
        # One draw per parameter (not one flat draw sliced up): slicing a flat draw copies every
        # matrix, which doubles the run time at width 4096 for a small saving in compile time.
        return {
            name: jax.random.normal(k, shape, dtype)
            for k, (name, shape) in zip(keys, shapes.items(), strict=True)
        }

    def count(self, data_dim: int | None = None) -> int:
        """The number of trained scalars."""
        return sum(math.prod(s) for s in self.shapes(data_dim).values())

    # ---- forward pass --------------------------------------------------------------------------

    def batch(self, x: Any) -> jax.Array:
        """x of shape (N, *input shape, d) as a float array of shape (N, positions, d)."""
        return as_batch(x, self.program.input, "x")

    def _forward(
        self, params: Mapping[str, jax.Array], x: jax.Array, taps: Mapping[str, jax.Array] | None
    ) -> tuple[jax.Array, jax.Array, _Run]:
        """(f, the readout features sqrt(sv2/n)·h_out, the run's record)."""
        run = _Run(params, x, self.width, taps)
        for instr in self.program.instrs:
            run.env[instr.out] = RULES[type(instr)](self, instr, run)
        # K outputs: one readout vector each, the variance split evenly (1/K each)
        outs = self.program.outputs
        features = [run.vector(y) for y in outs]
        scale = self.readout_scale / math.sqrt(len(outs))
        readout = scale * (features[0] if len(outs) == 1 else jnp.concatenate(features, axis=-1))
        f = readout @ params[READOUT].astype(x.dtype)
        if self.readout_bias_std != 0:
            f = f + self.readout_bias_std * params[READOUT_BIAS].astype(x.dtype)
        return f, readout, run

    def apply(self, params: Mapping[str, jax.Array], x: Any) -> jax.Array:
        """f(x) of shape (N,), computed in the dtype of x."""
        return self._forward(params, self.batch(x), None)[0]

    def features(self, params: Mapping[str, jax.Array], x: Any) -> Features:
        """The per-example Jacobian factors of f (see `Features`), by one reverse pass."""
        return self._features(params, self.batch(x))

    def _features(self, params: Mapping[str, jax.Array], x: jax.Array) -> Features:
        tapped = [u for uses in self.uses.values() for u in uses] + self.biases
        zeros = {name: jnp.zeros((x.shape[0], self.width), x.dtype) for name in tapped}

        def total(taps: dict[str, jax.Array]) -> tuple[jax.Array, tuple[Any, jax.Array]]:
            f, readout, run = self._forward(params, x, taps)
            # Summing over examples is harmless: f(a) depends only on example a's taps.
            return f.sum(), (run.inputs, readout)

        grads, (inputs, readout) = jax.grad(total, has_aux=True)(zeros)
        d = x.shape[-1]
        weight_grads, weight_inputs = {}, {}
        for w in self.program.weights:
            uses = self.uses[w.name]
            if not uses:
                continue  # a declared but unused weight has zero Jacobian
            s = self.multiplier(w.name, d if w.on_data else self.width)
            weight_grads[w.name] = s * jnp.stack([grads[u] for u in uses])
            weight_inputs[w.name] = jnp.stack([inputs[u] for u in uses])
        bias_grads = {b: self.bias_dist[b][1] * grads[b] for b in self.biases}
        return Features(readout, weight_grads, weight_inputs, bias_grads)

    def _jitted(self, what: str, same: bool) -> Callable[..., tuple[jax.Array, jax.Array]]:
        """A jitted kernel function, compiled once per network (and per shapes and dtype)."""
        cache = self._jit_cache
        if (what, same) not in cache:
            bias_var = self.readout_bias_std**2

            def kernels(params: Params, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
                f1 = self._features(params, a)
                return contract(f1, f1 if same else self._features(params, b), bias_var)

            def sample(key: jax.Array, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
                return kernels(self.init(key, a.shape[-1], a.dtype), a, b)

            cache[what, same] = jax.jit(kernels if what == "kernels" else sample)
        return cache[what, same]


def contract(
    f1: Features, f2: Features, readout_bias_var: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """(NNGP, NTK) of shape (N1, N2) from the features of two batches of one network."""
    nngp = f1.readout @ f2.readout.T + readout_bias_var
    ntk = nngp
    for w, d1 in f1.weight_grads.items():
        # s² Σ_ij (dg_i(a)·dg_j(b)) (h_i(a)·h_j(b)); the s² is already in the stored dg's.
        grad_gram = jnp.einsum("ian,jbn->iajb", d1, f2.weight_grads[w])
        input_gram = jnp.einsum("iam,jbm->iajb", f1.weight_inputs[w], f2.weight_inputs[w])
        ntk = ntk + jnp.einsum("iajb,iajb->ab", grad_gram, input_gram)
    for b, g1 in f1.bias_grads.items():
        ntk = ntk + g1 @ f2.bias_grads[b].T
    return nngp, ntk


def empirical_kernels(
    net: FiniteNetwork, params: Mapping[str, jax.Array], x1: Any, x2: Any | None = None
) -> tuple[jax.Array, jax.Array]:
    """The empirical (NNGP, NTK) of one network between the rows of x1 and x2 (default x1).

    NTK = Σ over every parameter (readout included) of J(x1) J(x2)ᵀ. NNGP = the readout-feature
    Gram sv2 ⟨h_out(a), h_out(b)⟩ / n + svb2 of this one network (GP4A's estimator, THEORY §7.3),
    which converges to the NNGP at rate 1/sqrt(n) without sampling outputs.
    """
    a = net.batch(x1)
    b = None if x2 is None else net.batch(x2)
    return net._jitted("kernels", b is None)(dict(params), a, a if b is None else b)


def sample_kernels(
    net: FiniteNetwork, key: jax.Array, x1: Any, x2: Any | None = None, dtype: Any = None
) -> tuple[jax.Array, jax.Array]:
    """`empirical_kernels` of a fresh network drawn from `key`, init included in one jit.

    Computes in `dtype` (default: the dtype of x1). Cheaper than `init` + `empirical_kernels`
    when many networks are drawn: the parameters never leave the compiled function.
    """
    a = net.batch(x1)
    b = a if x2 is None else net.batch(x2)
    dtype = a.dtype if dtype is None else jnp.dtype(dtype)
    return net._jitted("sample", x2 is None)(key, a.astype(dtype), b.astype(dtype))


def finite(compiled: Any, width: int, data_dim: int | None = None) -> FiniteNetwork:
    """`Compiled.finite(width)`: the finite-width network of a compiled program."""
    return FiniteNetwork(compiled.ir, width, data_dim)
