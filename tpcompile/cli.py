"""The `tpcompile` command: the pipeline's stages, one subcommand each.

    tpcompile check FILE...          parse and type-check
    tpcompile ir FILE                print the unrolled, typed program
    tpcompile emit FILE [-o OUT]     write the generated JAX kernel module
    tpcompile show FILE              print the derived kernel recursion as mathematics
    tpcompile kernel FILE --x A.npy [--x2 B.npy] -o K.npz
    tpcompile verify FILE            empirical NTK of finite networks vs the infinite-width kernel

Exit codes: 0 success, 1 a mistake in the program or inputs (a `file:line:col: error:` message),
2 a bad command line, 3 an internal error (a bug in tpcompile; `--traceback` shows it).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from .errors import TPError
from .frontend import load_program, read_source
from .ir import Program


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


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:  # every file is checked, so one run reports every broken file
        try:
            prog = _program(args, path)
        except TPError as err:
            print(err.render(), file=sys.stderr)
            failed += 1
            continue
        kinds: dict[str, int] = {}
        for instr in prog.instrs:
            kinds[instr.kind] = kinds.get(instr.kind, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        print(f"{path}: ok ({len(prog.weights)} weights; values: {counts})")
    return 1 if failed else 0


def cmd_ir(args: argparse.Namespace) -> int:
    sys.stdout.write(str(_program(args, args.file)))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"check": cmd_check, "ir": cmd_ir}


def build_parser() -> argparse.ArgumentParser:
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
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", parents=[common], help="parse and type-check programs")
    p.add_argument("files", nargs="+", metavar="FILE")
    p = sub.add_parser("ir", parents=[common], help="print the unrolled typed program")
    p.add_argument("file", metavar="FILE")
    from . import (
        kernel_cli,  # noqa: F401 - registers emit, show, kernel
        verify,  # noqa: F401 - registers verify
    )

    for extend in EXTENSIONS:
        extend(sub, common)
    return parser


# Later stages register their subcommands here (see `kernel_cli.py`), once each.
EXTENSIONS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TPError as err:
        if args.traceback:
            traceback.print_exc()
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
