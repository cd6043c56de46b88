"""Program text: decoding bytes, normalising line endings, and the text errors are shown with.

Where this sits: before `parse`. Every way into the front end (a file named on the command line,
`load_program(text)`, `load_program(bytes)`) passes through `program_text`, so a program means the
same whatever its encoding and line endings: UTF-8 with or without a byte-order mark, UTF-16 with
one (what Windows PowerShell writes), CRLF or CR line ends. Files are decoded as UTF-8 explicitly,
never with the locale's encoding; undecodable bytes are a `TPError` at the line and column of the
first bad byte.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from tpcompile.errors import Span, TPError
from tpcompile.lang import limits

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

# Characters other than "\n" that `str.splitlines` (used to show an error's source line) takes for
# line breaks, while the parser does not, and tabs, which it expands: in the text an error is
# shown with each becomes one space, so line numbers and carets stay where the parser put them.
# Other control characters (NUL, ESC, ...) are shown as U+FFFD, never sent to the terminal.
_DISPLAY = str.maketrans(
    {
        **dict.fromkeys(map(chr, [*range(32), 127]), "\ufffd"),
        **dict.fromkeys("\t\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "),
        "\n": "\n",
    }
)


def normalize(text: str) -> str:
    """CRLF and CR line ends as LF, and no byte-order mark (as Python reads text files)."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def display(text: str) -> str:
    """The text to render error context from: same lines and columns as the parser's."""
    return text.translate(_DISPLAY)


def check_size(length: int, filename: str) -> None:
    if length > limits.MAX_SOURCE:
        raise TPError(
            f"the program is longer than the limit of {limits.MAX_SOURCE} characters",
            hint="is this the right file? programs are short texts",
        ).with_source("", filename)


def decode(data: bytes, filename: str) -> str:
    """Program text from a file's bytes, or a TPError naming the first undecodable byte."""
    check_size(len(data), filename)
    if data.startswith(_UTF16_BOMS):
        try:
            return normalize(data.decode("utf-16"))
        except UnicodeDecodeError:
            raise TPError(
                "the file starts with a UTF-16 byte-order mark but is not valid UTF-16",
                hint="save the program as UTF-8",
            ).with_source("", filename) from None
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return normalize(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _decode_error(body, exc.start, filename) from None


def _decode_error(body: bytes, bad: int, filename: str) -> TPError:
    before = normalize(body[:bad].decode("utf-8"))  # everything before the first bad byte is valid
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1) + 1
    sample = body[:4096]
    binary = b"\0" in sample or sum(b < 9 or 13 < b < 32 for b in sample) > len(sample) // 20
    hint = (
        "this looks like binary data, not a .tp program"
        if binary
        else "programs are read as UTF-8; convert the file, e.g. "
        "`iconv -f latin1 -t utf-8 old.tp > new.tp`"
    )
    err = TPError(
        f"byte 0x{body[bad]:02x} is not valid UTF-8 (the file is not UTF-8 text)",
        Span.point(line, col),
        hint,
    )
    return err.with_source(display(normalize(body.decode("utf-8", "replace"))), filename)


def read(path: str | Path) -> str:
    """A program file's text: its bytes decoded by `decode`, whatever the locale."""
    try:
        with open(path, "rb") as file:
            data = file.read(limits.MAX_SOURCE + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, IsADirectoryError):
            reason = "it is a directory"
        raise TPError(f"cannot read {path}: {reason}") from None
    return decode(data, str(path))


def file_name_hint(text: str) -> str | None:
    """A hint for a file name passed where program text is expected (`compile("net.tp")`)."""
    name = text.strip()
    if not name or "\n" in name or len(name) > 4096:
        return None
    try:
        exists = os.path.isfile(name)
    except (ValueError, OSError):  # e.g. an embedded NUL
        exists = False
    if not (exists or name.endswith(".tp")):
        return None
    return (
        f"`{name}` looks like a file name, not program text; pass the text: "
        f"tpcompile.compile(Path({name!r}).read_text(), filename={name!r}), "
        f"or run `tpcompile check {name}`"
    )
