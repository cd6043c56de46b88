"""The public API's arguments, checked: program text, params, numerical options, `get`.

Where this sits: at the API edge (`api.compile`, `Compiled.kernel_fn`). Arguments of the wrong
type or value raise `TPError` with a hint, like mistakes in a program; nothing here imports JAX.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tpcompile.errors import KernelInputError, TPError, did_you_mean
from tpcompile.kernels.plan import NumericOptions

KINDS = ("nngp", "ntk")


def kernel_fields(get: object) -> tuple[str, ...]:
    """kernel_fn's `get` as a tuple of distinct kernel names (None: all of them)."""
    if get is None:
        return KINDS
    names = (get,) if isinstance(get, str) else get
    if not isinstance(names, Sequence) or isinstance(names, bytes):
        raise KernelInputError(
            f"get must be 'nngp', 'ntk' or a tuple of them, got {type(get).__name__} {get!r}",
            hint="e.g. get='ntk' or get=('nngp', 'ntk')",
        )
    fields = tuple(names) or KINDS
    for f in fields:
        if f not in KINDS:
            hint = None
            if isinstance(f, str):  # did_you_mean is case-sensitive; NTK is the usual slip
                hint = (
                    f"did you mean `{f.lower()}`?" if f.lower() in KINDS else did_you_mean(f, KINDS)
                )
            raise KernelInputError(
                f"unknown kernel `{f}` in get", hint=hint or "get is 'nngp', 'ntk' or both"
            )
    if len(set(fields)) < len(fields):  # a named tuple cannot have a field twice
        twice = next(f for f in fields if fields.count(f) > 1)
        raise KernelInputError(
            f"get names `{twice}` twice: {tuple(fields)!r}", hint="list each kernel once"
        )
    return fields


def source_text(source: object) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        try:
            return data.decode("utf-8-sig")  # -sig: a byte-order mark is not program text
        except UnicodeDecodeError as exc:
            raise TPError(
                f"compile(): the program is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                f"offset {exc.start})",
                hint="decode it yourself, e.g. compile(data.decode('latin-1'))",
            ) from None
    if isinstance(source, os.PathLike):
        raise TPError(
            f"compile() takes program text, not a path: got {source!r}",
            hint=f"compile(Path({os.fspath(source)!r}).read_text())",
        )
    raise TPError(
        f"compile() takes the program text as a str, got {type(source).__name__}",
        hint="e.g. compile(open('prog.tp').read())",
    )


def looks_like_a_path(text: str) -> bool:
    name = text.strip()
    return bool(name) and "\n" not in name and (name.endswith(".tp") or os.path.isfile(name))


def check_params(params: object) -> dict[str, object] | None:
    if params is None:
        return None
    if not isinstance(params, Mapping):
        raise TPError(
            f"compile(): params must be a mapping of param names to values, got "
            f"{type(params).__name__}",
            hint='e.g. params={"L": 5}',
        )
    for name in params:
        if not isinstance(name, str):
            raise TPError(
                f"compile(): params keys are param names (str), got {name!r}",
                hint='e.g. params={"L": 5}',
            )
    return dict(params)


def numeric_options(
    tol: object, samples: object, seed: object, method: object, degree: object
) -> Any:
    """NumericOptions from compile()'s keywords; NumPy scalars count as the numbers they are."""

    def plain(value: object, kind: type) -> object:
        ok = isinstance(value, numbers.Integral if kind is int else numbers.Real)
        return kind(value) if ok and not isinstance(value, bool) else value

    try:
        return NumericOptions(
            tol=plain(tol, float),  # type: ignore[arg-type]
            samples=plain(samples, int),  # type: ignore[arg-type]
            seed=plain(seed, int),  # type: ignore[arg-type]
            method=method,  # type: ignore[arg-type]
            degree=None if degree is None else plain(degree, int),  # type: ignore[arg-type]
        )
    except (TypeError, ValueError) as exc:
        raise TPError(f"compile(): {exc}") from None
