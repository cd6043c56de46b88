"""The kernel compiler's subcommands of `tpcompile`: emit, show, kernel.

They sit on top of `api.compile`; `cli.py` holds the front end's commands and error handling.
The CLI computes in float64 unless `--float32` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import cli
from .errors import KernelInputError
from .frontend import read_source


def compile_file(args: argparse.Namespace, x64: bool | None = None):  # -> api.Compiled
    """Compile `args.file` with its `-D` overrides, in float64 unless `x64` or --float32 say
    otherwise (JAX is imported here, lazily: `check` and `ir` never pay for it)."""
    import jax

    if x64 is None:
        x64 = not getattr(args, "float32", False)
    jax.config.update("jax_enable_x64", x64)
    from .api import compile as compile_program

    return compile_program(read_source(args.file), cli._params(args.define), filename=args.file)


def cmd_emit(args: argparse.Namespace) -> int:
    source = compile_file(args).source
    if args.output:
        Path(args.output).write_text(source)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(source)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .show import derivation

    sys.stdout.write(derivation(compile_file(args), latex=args.latex))
    return 0


def _load(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise KernelInputError(f"cannot read {what} from {path}: {exc}") from None


def demo_inputs(compiled, n: int = 4, d: int = 3, seed: int = 0) -> np.ndarray:
    """A small fixed batch shaped for the program's input: (n, d) or (n, T, d)."""
    shape = (n, *compiled.ir.input.shape, d)
    return np.random.default_rng(seed).normal(size=shape)


def cmd_kernel(args: argparse.Namespace) -> int:
    compiled = compile_file(args)
    x1 = _load(args.x, "--x") if args.x else demo_inputs(compiled)
    x2 = _load(args.x2, "--x2") if args.x2 else None
    k = compiled.kernel_fn(x1, x2, get=("nngp", "ntk"))
    nngp, ntk = np.asarray(k.nngp, dtype=np.float64), np.asarray(k.ntk, dtype=np.float64)
    if args.output:
        np.savez(args.output, nngp=nngp, ntk=ntk)
        print(f"wrote {args.output}: nngp and ntk of shape {nngp.shape}")
    if not args.output or not args.x:
        where = "built-in demo inputs, " + f"x of shape {x1.shape}" if not args.x else args.x
        with np.printoptions(precision=6, suppress=True, linewidth=100):
            print(f"# {args.file} on {where}\nNNGP =\n{nngp}\nNTK =\n{ntk}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    numeric = argparse.ArgumentParser(add_help=False)
    numeric.add_argument("--float32", action="store_true", help="compute in float32")
    p = sub.add_parser("emit", parents=[common, numeric], help="write the generated JAX module")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", help="output .py file (default: print)")
    p = sub.add_parser("show", parents=[common, numeric],
                       help="print the derived kernel recursion as mathematics")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--latex", action="store_true", help="LaTeX instead of plain text")
    p = sub.add_parser("kernel", parents=[common, numeric],
                       help="compute NNGP and NTK matrices (float64 .npz)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--x", help=".npy array (N, d) or (N, T, d); default: a built-in demo batch")
    p.add_argument("--x2", help="second batch (default: x with itself)")
    p.add_argument("-o", "--output", help="write nngp and ntk to this .npz file")


cli.EXTENSIONS.append(register)
cli.COMMANDS.update({"emit": cmd_emit, "show": cmd_show, "kernel": cmd_kernel})
__all__ = ["compile_file", "demo_inputs", "register"]
