"""The files the CLI reads and writes: `.npy` arrays in, `.npz` / `.py` / image files out, and the
folder of JAX's persistent compilation cache.

Where this sits: under `cli.py` only (the Python API takes arrays, not files). Every mistake is a
`TPError` that names the flag and the file (`--x data.npz: ...`), because a bare NumPy or OS message
("pickled data", "No such file or directory") does not say which of several files it was about.

Output files are written atomically: into a temporary file in the destination folder, renamed over
the destination (`os.replace`) only once complete, so an interrupted or failed run never leaves a
truncated file behind. Destinations are checked before the (possibly long) computation starts.

Only `compilation_cache` imports JAX (when it is entered), so `tpcompile check` stays JAX-free.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tpcompile.errors import TPError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive of .npy files
SHAPES = "(N, d), or (N, T, d) for an indexed input x[1..T]"


def load_array(path: str, flag: str, expect: str = SHAPES) -> Any:
    """The array of the `.npy` file `path` given to `flag`; every failure names both.

    Only `.npy` files are read, without pickles (a pickle can run code). `expect` says, in the
    messages, what the flag wants (e.g. "(N,) or (N, k)" for targets).
    """
    import numpy as np

    where = f"{flag} {path}"
    file = Path(path)
    if file.is_dir():
        raise TPError(f"{where}: is a folder, not a .npy file")
    try:
        with file.open("rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise TPError(f"{where}: no such file") from None
    except OSError as exc:
        raise TPError(f"{where}: cannot read it ({exc.strerror})") from None
    if head.startswith(ZIP_MAGIC):
        raise _npz_error(path, where, expect)
    if not head.startswith(NPY_MAGIC):
        what = "an empty file" if not head else "not a .npy file (NumPy's format, from np.save)"
        table = f"np.save('{file.stem}.npy', np.loadtxt('{path}'))"
        hint = f"for a text table: {table}" if _is_text(head) else None
        raise TPError(f"{where}: {what}; expected an array of shape {expect}", hint=hint)
    try:
        return np.load(file, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise TPError(
                f"{where}: holds Python objects (dtype object); expected an array of numbers",
                hint="save a numeric array: np.save(path, np.asarray(x, dtype=float))",
            ) from None
        raise TPError(f"{where}: a damaged .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise TPError(f"{where}: a damaged .npy file ({exc})") from None


def _npz_error(path: str, where: str, expect: str) -> TPError:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
    except Exception:  # noqa: BLE001 - a zip that is not an .npz: say so, whatever went wrong
        return TPError(f"{where}: a zip archive, not a .npy file; expected an array of {expect}")
    listed = ", ".join(keys) if keys else "none"
    key = keys[0] if keys else "x"
    return TPError(
        f"{where}: an .npz archive (arrays: {listed}); expected one .npy array of shape {expect}",
        hint=f"save the array you mean as .npy: np.save('{key}.npy', np.load('{path}')['{key}'])",
    )


def _is_text(head: bytes) -> bool:
    """Whether the first bytes read as text (the last character may be cut off by the read)."""
    text = head.decode("utf-8", "ignore")
    return (
        bool(text)
        and len(text.encode()) >= len(head) - 3
        and all(c.isprintable() or c.isspace() for c in text)
    )


# ---- outputs -----------------------------------------------------------------------------------


def output_path(path: str, flag: str, suffix: str | None = None, extension: bool = False) -> Path:
    """The file an output flag names, checked before any work: its folder must exist and be
    writable, and it must not be a folder itself. With `suffix`, a name without it gets it
    appended (as `np.savez` does: `-o K` writes K.npz); `extension` requires one (matplotlib
    picks the image format by it)."""
    out = Path(path)
    if suffix and out.suffix != suffix:
        out = out.with_name(out.name + suffix)
    where = f"{flag} {path}"
    if extension and not out.suffix:
        raise TPError(f"{where}: give a file name with an extension", hint="e.g. errors.png")
    if out.is_dir():
        raise TPError(
            f"{where}: is a folder; give a file name", hint=f"e.g. {out / 'out'}{suffix or ''}"
        )
    folder = out.parent
    if not folder.exists():
        raise TPError(
            f"{where}: the folder {folder} does not exist",
            hint=f"create it first (mkdir -p {folder}); tpcompile does not create folders",
        )
    if not folder.is_dir():
        raise TPError(f"{where}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TPError(f"{where}: cannot write into the folder {folder} (permission denied)")
    return out


@contextlib.contextmanager
def atomic_output(out: Path, flag: str) -> Iterator[Path]:
    """A temporary path next to `out` (same suffix, so writers that go by the extension still
    work) to write to; it replaces `out` when the block ends without an error, else it is
    removed."""
    where = f"{flag} {out}"
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.tmp-", suffix=out.suffix)
    except OSError as exc:
        raise TPError(f"{where}: cannot write into {out.parent} ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(_default_mode(out))  # mkstemp's 0600 would leave the output unreadable to others
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TPError(f"{where}: cannot write it ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _default_mode(out: Path) -> int:
    """The mode a plain `open(out, "w")` would give: the existing file's, else 0666 - umask."""
    with contextlib.suppress(OSError):
        return out.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# ---- the compilation cache ---------------------------------------------------------------------


def cache_folder() -> Path:
    """Where the CLI keeps JAX's persistent compilation cache: $XDG_CACHE_HOME/tpcompile/jax, or
    ~/.cache/tpcompile/jax."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tpcompile" / "jax"


@contextlib.contextmanager
def compilation_cache(enabled: bool) -> Iterator[None]:
    """JAX's persistent compilation cache in the user's cache folder, for one command.

    Only for this command: the previous settings are restored and the cache object reset after it,
    so `main()` called from Python (the tests) leaves JAX as it found it."""
    if not enabled or os.environ.get("TPCOMPILE_NO_CACHE", "") not in ("", "0"):
        yield
        return
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    if jax.config.jax_compilation_cache_dir is not None:  # the user's own cache: theirs to keep
        yield
        return
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        yield
        return
    # Every compilation is kept (JAX's default keeps those over 1 s only): the kernels are many
    # small jitted functions, each well under a second, that add up to most of a first run.
    saved = {k: getattr(jax.config, k) for k in CACHE_SETTINGS}
    try:
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        yield
    finally:
        for key, value in saved.items():
            jax.config.update(key, value)
        cc.reset_cache()


CACHE_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
