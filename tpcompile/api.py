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

from tpcompile.codegen.module import emit_module
from tpcompile.errors import KernelInputError, TPError
from tpcompile.inputs import as_batch, default_float
from tpcompile.ir import Program
from tpcompile.kernels import analyse
from tpcompile.kernels.plan import NumericOptions, NumericQuantity, NumericSpec, build_report
from tpcompile.lang.frontend import load_program

KINDS = ("nngp", "ntk")


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
    ) -> None:
        self.ir = program
        self.params = dict(params or {})
        self.program_text = source_text
        self.filename = filename
        self.options = options or NumericOptions()
        try:
            self.graph, self.nngp_expr, self.ntk_expr = analyse(program, self.options)
        except TPError as err:
            raise err.with_source(source_text, filename) from None
        self.source = emit_module(self.graph, self.nngp_expr, self.ntk_expr, filename)
        namespace: dict[str, Any] = {"__name__": f"tpcompile_generated_{id(self):x}"}
        # The text is generated from the IR by our printers (never from user text verbatim).
        exec(builtins.compile(self.source, f"<tpcompile:{filename}>", "exec"), namespace)  # noqa: S102
        self._module = namespace

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled as what it was compiled from: the generated module (functions made by `exec`)
        # cannot be pickled, and recompiling gives the same kernels.
        return _recompile, (self.program_text, self.params, self.filename, self.options)

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
        diag1 = self._module["diagonal"](x1, errors)
        diag2 = diag1 if same else self._module["diagonal"](x2, errors)
        nngp, ntk = self._module["cross"](x1, x1 if same else x2, diag1, diag2, want_ntk, errors)
        if same:  # the exact kernel is symmetric; remove rounding and sampling asymmetry
            nngp = (nngp + nngp.T) / 2
            ntk = None if ntk is None else (ntk + ntk.T) / 2
        return nngp, ntk

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
        fields = (get,) if isinstance(get, str) else tuple(get or KINDS)
        for f in fields:
            if f not in KINDS:
                raise KernelInputError(f"unknown kernel `{f}`", hint="get is 'nngp' or 'ntk'")
        a = self._check(x1, "x1")
        b = None if x2 is None else self._check(x2, "x2")
        if b is not None and a.shape[-1] != b.shape[-1]:
            raise KernelInputError(f"x1 has data dimension {a.shape[-1]} but x2 has {b.shape[-1]}")
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


def compile(  # noqa: A001 - the natural name, as in re.compile
    source: str,
    params: Mapping[str, object] | None = None,
    filename: str = "<string>",
    *,
    tol: float = 1e-10,
    samples: int = 65536,
    seed: int = 0,
    method: str = "auto",
    degree: int | None = None,
) -> Compiled:
    """Compile `.tp` program text into kernels. `params` overrides `param` declarations.

    The keyword options control numerical expectations (`numerics.NumericOptions`): `tol` is the
    target error of every numerical quantity relative to its scale (Mehler series and 1-D rules
    check it a posteriori, quadrature degrees follow it); `samples` and `seed` are Monte Carlo's;
    `method` ("auto", "mehler", "split", "hermite", "mc") forces the rule of one-variable pairs
    and `degree` the degree of the quadrature rules (for references and benchmarks)."""
    options = NumericOptions(tol=tol, samples=samples, seed=seed, method=method, degree=degree)
    program = load_program(source, params, filename)
    return Compiled(program, source, filename, options, params)


def _recompile(
    source: str, params: Mapping[str, object], filename: str, options: NumericOptions
) -> Compiled:
    """Unpickle a `Compiled`: compile its program text again with the same params and options."""
    return Compiled(load_program(source, params, filename), source, filename, options, params)
