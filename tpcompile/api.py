"""The public API: `tpcompile.compile(source) -> Compiled`, the pipeline behind one call.

    c = tpcompile.compile(src, params={"L": 5})
    k = c.kernel_fn(x1, x2=None, get=("nngp", "ntk"))   # the neural-tangents call shape
    c.source   # the generated JAX module;   c.ir   # the typed program;   c.show()

Expectations without a closed form are computed numerically (THEORY §6); keyword options of
`compile` set how: `tol` (1e-10, target error of each numerical quantity relative to its scale),
`samples` (65536) and `seed` (0) for Monte Carlo, `method` ("auto") and `degree` (None) to force a
rule (see `numerics.NumericOptions`). `c.numerics` lists the numerical quantities and their
methods; `c.kernel_fn(..., return_errors=True)` also returns a `NumericReport` of their estimated
errors (bounds, or standard errors for Monte Carlo) for that evaluation.

Errors in the program or in the arrays raise `TPError` (rendered with file, line and caret).
Kernels follow JAX's x64 setting: float64 when `jax_enable_x64` is on, float32 otherwise.
"""

from __future__ import annotations

import builtins
import collections
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tpcompile.arguments import (
    check_params,
    kernel_fields,
    looks_like_a_path,
    numeric_options,
    source_text,
)
from tpcompile.codegen.module import emit_module
from tpcompile.codegen.tensor import families_evaluator
from tpcompile.errors import KernelInputError, NonFiniteKernelError, TPError
from tpcompile.inputs import as_batch, default_float
from tpcompile.ir import Program
from tpcompile.kernels import analyse
from tpcompile.kernels.plan import NumericOptions, NumericQuantity, NumericSpec, build_report
from tpcompile.lang.frontend import load_program
from tpcompile.resources import KernelSize, check_memory, kernel_size
from tpcompile.runtime import mirrored, per_example

DIAGONAL_ROWS = 8  # the per-example pass runs on whole vector lanes (see `_diagonal`)


def _all_finite(*values: Any) -> bool:
    """False if any array among values (pytrees, None skipped) holds inf or NaN; True under
    jit or other tracing, where values cannot be inspected (the check is then skipped)."""
    leaves = jax.tree_util.tree_leaves(values)
    if any(isinstance(v, jax.core.Tracer) for v in leaves):
        return True
    return all(bool(np.all(np.isfinite(np.asarray(v)))) for v in leaves)


@functools.cache
def _result_type(fields: tuple[str, ...]) -> type:
    return collections.namedtuple("Kernels", fields)


class Compiled:
    """A compiled program: its IR, its kernel graph, the generated module and `kernel_fn`."""

    def __init__(
        self,
        program: Program,
        source_text: str,
        filename: str,
        options: NumericOptions | None = None,
        params: Mapping[str, object] | None = None,
        unroll: bool = False,
    ) -> None:
        self.ir = program
        self.unroll = unroll
        self.params = dict(params or {})
        self.program_text = source_text
        self.filename = filename
        self.options = options or NumericOptions()
        try:
            evaluator = None if unroll else families_evaluator(program, self.options)
            if evaluator is not None:
                self.graph, self.nngp_expr, self.ntk_expr = evaluator.analysis
                self.source = evaluator.describe()
                self._module: Any = evaluator
                return
            self.graph, self.nngp_expr, self.ntk_expr = analyse(program, self.options)
        except TPError as err:
            raise err.with_source(source_text, filename) from None
        self.source = emit_module(self.graph, self.nngp_expr, self.ntk_expr, filename)
        namespace: dict[str, Any] = {"__name__": f"tpcompile_generated_{id(self):x}"}
        # The text is generated from the IR by our printers (never from user text verbatim).
        exec(builtins.compile(self.source, f"<tpcompile:{filename}>", "exec"), namespace)  # noqa: S102
        self._module = namespace

    @property
    def rolled(self) -> bool:
        """Whether the kernels are computed over families (tensors over member pairs) rather
        than over the unrolled program's scalars."""
        return not isinstance(self._module, dict)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled as what it was compiled from: the generated module (functions made by `exec`)
        # cannot be pickled, and recompiling gives the same kernels.
        return _recompile, (
            self.program_text,
            self.params,
            self.filename,
            self.options,
            self.unroll,
        )

    @property
    def numerics(self) -> tuple[NumericQuantity, ...]:
        """The quantities computed numerically (Hermite coefficients, an intermediate, excluded)."""
        return tuple(
            NumericQuantity(n.id, n.label, n.formula.method, n.formula.description)
            for n in self.graph.nodes
            if isinstance(n.formula, NumericSpec) and n.formula.method != "coefficients"
        )

    def _kernels(
        self,
        x1: jax.Array,
        x2: jax.Array,
        want_ntk: bool,
        same: bool,
        errors: dict[int, list[Any]] | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        diag1 = self._diagonal(x1, errors)
        if not same:
            diag2 = self._diagonal(x2, errors)
            nngp, ntk = self._module["cross"](x1, x2, diag1, diag2, want_ntk, errors)
        else:
            nngp, ntk = self._symmetric(x1, diag1, want_ntk, errors)
        if not _all_finite(nngp, ntk):
            self._diagnose(x1, x2, want_ntk, same)
        return nngp, ntk

    def _symmetric(
        self,
        x: jax.Array,
        diag: dict[Any, Any],
        want_ntk: bool,
        errors: dict[int, list[Any]] | None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """K(X, X): the pairs above the diagonal once each (the exact kernel is symmetric, so
        half the work), mirrored below; the diagonal is K(x, x) as the per-example pass
        computes it, the same for any batch."""
        n = x.shape[0]
        upper, lower = np.triu_indices(n, 1)

        def gather(index: np.ndarray) -> dict[int, Any]:
            return per_example(diag, lambda a: a[index])

        pairs: tuple[Any, Any] = (None, None)
        if len(upper) and self.rolled:  # gathered block by block
            pairs = self._module.pairs(x, diag, upper, lower, want_ntk, errors)
        elif len(upper):
            recorded = {k: len(v) for k, v in (errors or {}).items()}
            pairs = self._module["cross"](
                x[upper], x[lower], gather(upper), gather(lower), want_ntk, errors, paired=True
            )
            for node, results in (errors or {}).items():  # reported per entry of K(X, X)
                start = recorded.get(node, 0)
                own = results[start - 1] if start else None  # the node's (a, a) entries
                results[start:] = [mirrored(r, own, upper, lower, n) for r in results[start:]]
        out = []
        for field, values in zip(("nngp", "ntk"), pairs, strict=True):
            if field == "ntk" and not want_ntk:
                out.append(None)
                continue
            grid = (
                jnp.zeros((n, n), diag[field].dtype).at[np.arange(n), np.arange(n)].set(diag[field])
            )
            if values is not None:
                grid = grid.at[upper, lower].set(values).at[lower, upper].set(values)
            out.append(grid)
        return out[0], out[1]

    def _diagonal(self, x: jax.Array, errors: dict[int, list[Any]] | None) -> dict[Any, Any]:
        """The per-example pass, on a batch padded to a multiple of DIAGONAL_ROWS by repeating
        its last example. XLA's vector loops round a short remainder differently from full
        lanes; padded, every example is computed in the same lanes whatever N is, so K(x, x)
        equals the diagonal of K(X, X) bitwise (closed forms; numerical quantities agree to
        their stated error, their adaptive rules see the whole batch)."""
        n = x.shape[0]
        extra = -n % DIAGONAL_ROWS
        if extra:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])
        out = self._module["diagonal"](x, errors)
        return {k: v[:n] for k, v in out.items()} if extra else out

    def _diagnose(self, x1: jax.Array, x2: jax.Array, want_ntk: bool, same: bool) -> None:
        """Raise `NonFiniteKernelError` naming the first quantity, in evaluation order, that is
        inf or NaN: evaluate again (the failing path only) with every quantity recorded."""
        traces: list[tuple[str, dict[int, Any]]] = [("x1", {}), ("x2", {}), ("x1, x2", {})]
        diag1 = self._module["diagonal"](x1, None, traces[0][1])
        diag2 = diag1 if same else self._module["diagonal"](x2, None, traces[1][1])
        self._module["cross"](x1, x1 if same else x2, diag1, diag2, want_ntk, None, traces[2][1])
        hint = (
            "a variance or an input is too large (or too small) for "
            f"{x1.dtype.name}: check the weight and bias variances and the scale of the inputs"
        )
        for where, trace in traces:
            for k in sorted(trace):
                if not _all_finite(trace[k]):
                    node = self.graph.nodes[k]
                    raise NonFiniteKernelError(
                        f"the kernel is not finite: `{node.label}` overflowed (inf or NaN) "
                        f"at inputs {where}; it is the first such quantity",
                        hint=hint,
                    )
        raise NonFiniteKernelError(
            "the kernel is not finite: every quantity is, but the NNGP/NTK sum overflowed",
            hint=hint,
        )

    def kernel_fn(
        self,
        x1: Any,
        x2: Any | None = None,
        get: str | Sequence[str] | None = ("nngp", "ntk"),
        *,
        return_errors: bool = False,
    ) -> Any:
        """Infinite-width kernels between the rows of x1 and x2 (x2=None: x1 with itself).

        x has shape (N, d) for `input x`, or (N, T, d) (more axes for more indices) for an indexed
        input. `get` is "nngp", "ntk", or a tuple of them; a string returns one array, a tuple a
        named tuple with those fields. With return_errors=True the result is (kernels, report):
        a `NumericReport` with, per numerical quantity, the largest estimated error over the
        entries it was evaluated at (an empty report when everything is exact).
        """
        fields = kernel_fields(get)
        a = self._check(x1, "x1")
        b = None if x2 is None else self._check(x2, "x2")
        if b is not None and a.shape[-1] != b.shape[-1]:
            raise KernelInputError(f"x1 has data dimension {a.shape[-1]} but x2 has {b.shape[-1]}")
        n2 = a.shape[0] if b is None else b.shape[0]
        self.check_memory(a.shape[0], n2, a.shape[-1], a.dtype.itemsize)
        # Runs op by op: the closed forms and integrands are compiled functions of their own
        # (see codegen/module.py), so nothing here is traced into one graph that grows with depth.
        errors: dict[int, list[Any]] | None = {} if return_errors else None
        nngp, ntk = self._kernels(
            a, a if b is None else b, want_ntk="ntk" in fields, same=b is None, errors=errors
        )
        values = {"nngp": nngp, "ntk": ntk}
        out = (
            values[get]
            if isinstance(get, str)
            else _result_type(fields)(*(values[f] for f in fields))
        )
        if errors is None:
            return out
        return out, build_report(self.numerics, errors)

    def finite(self, width: int, data_dim: int | None = None) -> Any:
        """The same program as a finite random network of this width (`finite.FiniteNetwork`):
        `init(key)`, `apply(params, x)`, and `finite.empirical_kernels` for its NNGP and NTK."""
        from tpcompile.finite.network import finite

        return finite(self, width, data_dim)

    def _check(self, x: Any, what: str) -> jax.Array:
        return as_batch(x, self.ir.input, what, dtype=default_float())

    def check_memory(self, n1: int, n2: int, dim: int, itemsize: int = 8) -> None:
        """Raise `ResourceLimitError` if the kernels of n1 × n2 inputs of data dimension `dim`
        would not fit in memory (see `tpcompile.resources`); called by `kernel_fn` before it
        allocates anything."""
        check_memory(self.size, n1, n2, self.ir.input.positions, dim, itemsize)

    @functools.cached_property
    def size(self) -> KernelSize:
        """How many arrays one evaluation holds: per pair of inputs, per input (`resources.py`)."""
        return self._module.size() if self.rolled else kernel_size(self.graph)


def compile(  # noqa: A001 - the natural name, as in re.compile
    source: str | bytes,
    params: Mapping[str, object] | None = None,
    filename: str = "<string>",
    *,
    tol: float = 1e-10,
    samples: int = 65536,
    seed: int = 0,
    method: str = "auto",
    degree: int | None = None,
    unroll: bool = False,
) -> Compiled:
    """Compile `.tp` program text into kernels. `params` overrides `param` declarations.

    `source` is the program text (bytes are decoded as UTF-8; read a file with
    `Path(p).read_text()`). The keyword options control numerical expectations
    (`numerics.NumericOptions`): `tol` is the
    target error of every numerical quantity relative to its scale (Mehler series and 1-D rules
    check it a posteriori, quadrature degrees follow it); `samples` and `seed` are Monte Carlo's;
    `method` ("auto", "mehler", "split", "hermite", "mc") forces the rule of one-variable pairs
    and `degree` the degree of the quadrature rules (for references and benchmarks). Arguments of
    the wrong type raise `TPError`, like mistakes in the program.

    Loops whose iterations are one template (the positions of a convolution) are computed as
    families, tensors over pairs of positions (`c.rolled`); `unroll=True` computes every
    position as its own scalar quantity instead (the oracle, slow for large inputs)."""
    text = source_text(source)
    if not isinstance(filename, str):
        raise TPError(f"compile(): filename must be a str, got {type(filename).__name__}")
    params = check_params(params)
    options = numeric_options(tol, samples, seed, method, degree)
    try:
        program = load_program(text, params, filename)
    except TPError as err:
        if looks_like_a_path(text):  # compile("prog.tp"): the likely mistake, whatever the parse
            path = text.strip()
            err.hint = f"compile() takes program text, not a file name: open({path!r}).read()"
        raise
    return Compiled(program, text, filename, options, params, unroll=bool(unroll))


def _recompile(
    source: str,
    params: Mapping[str, object],
    filename: str,
    options: NumericOptions,
    unroll: bool = False,
) -> Compiled:
    """Unpickle a `Compiled`: compile its program text again with the same params and options."""
    program = load_program(source, params, filename)
    return Compiled(program, source, filename, options, params, unroll=unroll)
