"""The `tpcompile` command: the pipeline's stages, one subcommand each, registered here.

    tpcompile check FILE... [--size] parse and type-check; --size also counts the kernel quantities
    tpcompile ir FILE [--families]   print the unrolled, typed program (or rolled into families)
    tpcompile emit FILE [-o OUT]     write the generated JAX kernel module
    tpcompile show FILE              print the derived kernel recursion as mathematics
    tpcompile kernel FILE --x A.npy [--x2 B.npy] -o K.npz
    tpcompile verify FILE            empirical NTK of finite networks vs the infinite-width kernel
    tpcompile predict FILE --train X.npy --y y.npy [--test Xt.npy] [--t 1,10,inf] -o P.npz

Where this sits: on top of everything, and the error boundary. Exit codes: 0 success, 1 a mistake
in the program or inputs (a `file:line:col: error:` message), 2 a bad command line, 3 an internal
error (a bug in tpcompile; `--traceback` shows it), 4 a failed verification.

`check` and `ir` never import JAX. The kernel commands compute in float64 unless `--float32` is
given, inside a `jax.enable_x64` scope: the CLI never changes JAX's global configuration for longer
than one command. `kernel`, `verify` and `predict` keep JAX's persistent compilation cache in
$XDG_CACHE_HOME/tpcompile/jax (default ~/.cache/tpcompile/jax), so a second run of a program does
not compile it again; `--no-cache` or TPCOMPILE_NO_CACHE=1 turns that off, and a cache folder set
for JAX already (JAX_COMPILATION_CACHE_DIR) is left as it is. Input arrays are `.npy` files, and
outputs (`-o`, `--plot`) are written atomically into existing folders (`files.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tpcompile.errors import TPError
from tpcompile.files import atomic_output, compilation_cache, load_array, output_path
from tpcompile.ir import Program
from tpcompile.ir.families import format_families, roll
from tpcompile.lang.frontend import load_program, read_source
from tpcompile.resources import size_report


def _params(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise TPError(f"-D expects NAME=VALUE, got `{pair}`", hint="e.g. -D L=5")
        out[name.strip()] = value.strip()
    return out


def _program(args: argparse.Namespace, path: str) -> Program:
    return load_program(read_source(path), _params(args.define), filename=path)


@contextlib.contextmanager
def precision(x64: bool) -> Iterator[None]:
    """JAX's x64 mode for the duration of one command, restored afterwards."""
    import jax

    with jax.enable_x64(x64):
        yield


def compile_file(args: argparse.Namespace) -> Any:  # -> api.Compiled
    """Compile `args.file` with its `-D` overrides (JAX is imported here, not for check/ir)."""
    from tpcompile.api import compile as compile_program

    return compile_program(read_source(args.file), _params(args.define), filename=args.file)


def batches(compiled: Any, *files: tuple[Any, str, str | None]) -> None:
    """Arrays read from files, as (array or None, flag, path): checked against the program's input
    and each other's data dimension, the flag and file named in each message (the API says x1)."""
    from tpcompile.inputs import as_batch

    seen: list[tuple[Any, str]] = []
    for x, flag, path in (f for f in files if f[0] is not None):
        as_batch(x, compiled.ir.input, f"{flag} {path}:", dtype=None)
        for y, other in seen:
            if x.shape[-1] != y.shape[-1]:
                raise TPError(
                    f"{flag} {path}: data dimension {x.shape[-1]}, but {other} has {y.shape[-1]}"
                )
        seen.append((x, f"{flag} {path}"))


# ---- the commands ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:  # every file is checked, so one run reports every broken file
        try:
            source = read_source(path)
            prog = load_program(source, _params(args.define), filename=path)
            kinds: dict[str, int] = {}
            for instr in prog.instrs:
                kinds[instr.kind] = kinds.get(instr.kind, 0) + 1
            counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            print(f"{path}: ok ({len(prog.weights)} weights; values: {counts})")
            sys.stdout.flush()  # the size analysis may take a while: show what is known now
            print("  " + size_report(prog, analyse=args.size))
        except TPError as err:
            if err.filename == "<string>" and err.span is not None:  # from the kernel analysis
                err.with_source(source, path)
            print(err.render(), file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_ir(args: argparse.Namespace) -> int:
    program = _program(args, args.file)
    sys.stdout.write(format_families(roll(program)) if args.families else str(program))
    return 0


def cmd_emit(args: argparse.Namespace) -> int:
    out = output_path(args.output, "-o") if args.output else None  # before the compile
    with precision(not args.float32):
        source = compile_file(args).source
    if out:
        with atomic_output(out, "-o") as tmp:
            tmp.write_text(source)
        print(f"wrote {out}")
    else:
        sys.stdout.write(source)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from tpcompile.codegen.show import derivation

    with precision(not args.float32):
        sys.stdout.write(derivation(compile_file(args), latex=args.latex))
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    import numpy as np

    from tpcompile.inputs import demo_inputs

    out = output_path(args.output, "-o", ".npz") if args.output else None  # fail before the work
    x1 = load_array(args.x, "--x") if args.x else None
    x2 = load_array(args.x2, "--x2") if args.x2 else None
    with precision(not args.float32):
        compiled = compile_file(args)
        batches(compiled, (x1, "--x", args.x), (x2, "--x2", args.x2))
        x1 = demo_inputs(compiled.ir) if x1 is None else x1
        k = compiled.kernel_fn(x1, x2, get=("nngp", "ntk"))
        nngp, ntk = np.asarray(k.nngp, dtype=np.float64), np.asarray(k.ntk, dtype=np.float64)
    if out:
        with atomic_output(out, "-o") as tmp:
            np.savez(tmp, nngp=nngp, ntk=ntk)
        print(f"wrote {out}: nngp and ntk of shape {nngp.shape}")
    if not out or not args.x:
        where = "built-in demo inputs, " + f"x of shape {x1.shape}" if not args.x else args.x
        with np.printoptions(precision=6, suppress=True, linewidth=100):
            print(f"# {args.file} on {where}\nNNGP =\n{nngp}\nNTK =\n{ntk}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from tpcompile.finite import verify

    widths = verify.parse_widths(args.widths)
    if args.seeds < 2:
        raise TPError(
            f"--seeds must be at least 2 (the bound uses the seed spread), got {args.seeds}"
        )
    plot = output_path(args.plot, "--plot", extension=True) if args.plot else None
    if plot:
        verify.require_matplotlib()  # fail before the long run, not after
    x1 = load_array(args.x, "--x") if args.x else None  # files first: fail before compiling
    x2 = load_array(args.x2, "--x2") if args.x2 else None
    # The infinite-width kernels are always float64; --float32 only sets the finite networks'.
    with precision(True):
        compiled = compile_file(args)
        batches(compiled, (x1, "--x", args.x), (x2, "--x2", args.x2))
        if x1 is None:
            from tpcompile.inputs import demo_inputs

            x1 = demo_inputs(compiled.ir, n=6, d=4, seed=0)
        where = args.x or f"built-in inputs of shape {x1.shape}"
        print(
            f"# {args.file}: {where}{'' if x2 is None else f' vs {args.x2}'}; {args.seeds} "
            f"seeds per width; finite networks in {'float32' if args.float32 else 'float64'}"
        )
        sys.stdout.flush()
        progress = verify.Progress(len(widths) * args.seeds)
        fits = verify.sweep(compiled, x1, x2, widths, args.seeds, args.float32, progress)
    text, ok = verify.report(fits)
    sys.stdout.write(text)
    if plot:
        with atomic_output(plot, "--plot") as tmp:
            verify.plot(fits, str(tmp), f"{args.file}: empirical vs infinite-width kernels")
        print(f"wrote {plot}")
    if not ok:
        print("tpcompile: verification failed", file=sys.stderr)
        return verify.EXIT_FAILED
    return 0


def parse_times(text: str) -> list[float]:
    """--t: comma-separated training times; `inf` is the end of training (kernel regression)."""
    try:
        times = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise TPError(
            f"--t expects comma-separated times, got `{text}`", hint="e.g. --t 1,10,100,inf"
        ) from None
    if not times or any(not (t >= 0) for t in times):
        raise TPError(f"--t needs times >= 0, got `{text}`", hint="e.g. --t 1,10,100,inf")
    return times


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from tpcompile import predict

    times = parse_times(args.t)
    out = output_path(args.output, "-o", ".npz") if args.output else None
    x_train = load_array(args.train, "--train")  # files first: fail before compiling
    y_train = load_array(args.y, "--y", expect="(N,) or (N, k)")
    x_test = load_array(args.test, "--test") if args.test else None
    with precision(not args.float32):
        compiled = compile_file(args)
        batches(compiled, (x_train, "--train", args.train), (x_test, "--test", args.test))
        ensemble = predict.gradient_descent_mse_ensemble(
            compiled.kernel_fn, x_train, y_train, diag_reg=args.diag_reg
        )
        result = ensemble(t=np.asarray(times), x_test=x_test, get=args.kernel, compute_cov=args.cov)
        mean = np.asarray(result.mean if args.cov else result, dtype=np.float64)
        cov = np.asarray(result.covariance, dtype=np.float64) if args.cov else None
    where = args.test or "the training inputs"
    print(
        f"# {args.file}: {args.kernel.upper()} ensemble trained on {args.train} "
        f"({len(x_train)} points), predicted on {where}"
    )
    print(f"{'t':>10}  {'mean of predictions':>20}  {'mean |f - y|' if x_test is None else '':>14}")
    for i, t in enumerate(times):
        gap = None if x_test is not None else mean[i] - y_train.reshape(mean[i].shape)
        fit = "" if gap is None else f"{np.mean(np.abs(gap)):14.6g}"
        print(f"{t:10g}  {np.mean(mean[i]):20.6g}  {fit}")
    if out:
        arrays = {"t": np.asarray(times), "mean": mean}
        if cov is not None:
            arrays["covariance"] = cov
        with atomic_output(out, "-o") as tmp:
            np.savez(tmp, **arrays)
        print(
            f"wrote {out}: mean of shape {mean.shape}"
            + ("" if cov is None else f", covariance of shape {cov.shape}")
        )
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": cmd_check,
    "ir": cmd_ir,
    "emit": cmd_emit,
    "show": cmd_show,
    "kernel": cmd_kernel,
    "verify": cmd_verify,
    "predict": cmd_predict,
}


def build_parser() -> argparse.ArgumentParser:
    from tpcompile.finite.verify import DEFAULT_SEEDS, DEFAULT_WIDTHS

    parser = argparse.ArgumentParser(
        prog="tpcompile",
        description="Compile network programs (.tp) into infinite-width NNGP and NTK kernels.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-D",
        dest="define",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a param (repeatable)",
    )
    common.add_argument(
        "--traceback", action="store_true", help="show Python tracebacks (for debugging)"
    )
    numeric = argparse.ArgumentParser(add_help=False)
    numeric.add_argument("--float32", action="store_true", help="compute in float32")
    cached = argparse.ArgumentParser(add_help=False)
    cached.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="no persistent compilation cache (also: TPCOMPILE_NO_CACHE=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", parents=[common], help="parse and type-check programs")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--size", action="store_true", help="also count the kernel quantities (runs the analysis)"
    )
    p = sub.add_parser("ir", parents=[common], help="print the unrolled typed program")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--families", action="store_true", help="print it rolled into families")
    p = sub.add_parser("emit", parents=[common, numeric], help="write the generated JAX module")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", help="output .py file (default: print)")
    p = sub.add_parser(
        "show", parents=[common, numeric], help="print the derived kernel recursion as mathematics"
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--latex", action="store_true", help="LaTeX instead of plain text")
    p = sub.add_parser(
        "kernel",
        parents=[common, numeric, cached],
        help="compute NNGP and NTK matrices (float64 .npz)",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--x", help=".npy array (N, d) or (N, T, d); default: a built-in demo batch")
    p.add_argument("--x2", help="second batch (default: x with itself)")
    p.add_argument("-o", "--output", help="write nngp and ntk to this .npz file")
    p = sub.add_parser(
        "verify",
        parents=[common, cached],
        help="empirical NTK/NNGP of finite networks vs the infinite-width kernels",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--widths",
        default=",".join(map(str, DEFAULT_WIDTHS)),
        help="comma-separated widths (default: %(default)s)",
    )
    p.add_argument(
        "--seeds", type=int, default=DEFAULT_SEEDS, help="networks per width (default: %(default)s)"
    )
    p.add_argument("--x", help=".npy inputs (N, d) or (N, T, d); default: a built-in batch")
    p.add_argument("--x2", help="second batch (default: x with itself)")
    p.add_argument("--plot", metavar="OUT.png", help="log-log plot of error vs width")
    p.add_argument("--float32", action="store_true", help="finite networks in float32")
    p = sub.add_parser(
        "predict",
        parents=[common, numeric, cached],
        help="mean (and covariance) of infinitely wide networks trained by gradient flow",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--train", required=True, help=".npy training inputs (N, d) or (N, T, d)")
    p.add_argument("--y", required=True, help=".npy training targets (N,) or (N, k)")
    p.add_argument("--test", help=".npy test inputs (default: the training inputs)")
    p.add_argument("--t", default="inf", help="training times, e.g. 1,10,inf (default: inf)")
    p.add_argument(
        "--kernel",
        choices=("ntk", "nngp"),
        default="ntk",
        help="ntk: train every weight; nngp: train the readout only",
    )
    p.add_argument(
        "--diag-reg",
        type=float,
        default=0.0,
        help="add diag_reg * trace(K)/N to the diagonal (default 0)",
    )
    p.add_argument("--cov", action="store_true", help="also the covariance over initialisations")
    p.add_argument("-o", "--output", help="write t, mean (and covariance) to this .npz file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 locale must not turn `n×d` into a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        with compilation_cache(getattr(args, "cache", False)):
            return COMMANDS[args.command](args)
    except TPError as err:
        if args.traceback:
            traceback.print_exc()
        if err.source is None and err.span is None and err.filename == "<string>":
            err.filename = "tpcompile"  # an error about the command line or a data file
        print(err.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in tpcompile, not the user's mistake
        if args.traceback:
            traceback.print_exc()
        print(
            f"tpcompile: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in tpcompile; rerun with --traceback and report it.",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
