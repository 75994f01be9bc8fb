"""Sample ids people hand in: typed on a command line, or a file of them (one per line, or a CSV with a sample_id
column, such as a forget-set manifest). The one reader of id files: `iau requests add` and selection `ids` use it.

Strict, because a silently skipped line is a record that is never forgotten. Bounded, because the input may be
hostile: only regular files, at most `max_bytes` read, at most `max_ids` ids, and every error is one line that
names line numbers and problems but never echoes the file's contents (it may be /etc/passwd).
"""

from __future__ import annotations

import csv
import os
import re
import stat
from pathlib import Path

ID_COLUMN = "sample_id"
MAX_SAMPLE_ID = 2**63 - 1  # the ledger stores ids as 64-bit signed integers
DEFAULT_MAX_FILE_BYTES = 16 * 2**20  # params.yaml requests.max_file_bytes
DEFAULT_MAX_IDS = 100_000  # params.yaml requests.max_ids_per_call
MAX_LISTED = 5  # problems named one by one; beyond that, a count
MAX_MESSAGE = 400  # characters: an error stays one readable line whatever the input
_INTEGER = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")
_BOMS = {b"\xef\xbb\xbf": "UTF-8", b"\xff\xfe": "UTF-16 LE", b"\xfe\xff": "UTF-16 BE"}
_FILE_KINDS = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
               stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


class IdFileError(ValueError):
    """A malformed id file or argument; the one-line message names each bad line (never its contents)."""


def parse_ids(values: list[str], max_ids: int = DEFAULT_MAX_IDS) -> list[int]:
    """Sample ids typed on the command line: each an integer in 0..2^63-1; every bad one is named."""
    _refuse_too_many(len(values), max_ids, "arguments")
    _raise_if([(n, problem) for n, value in enumerate(values, 1) if (problem := _check(value, echo=True))],
              "argument")
    return [int(v.strip()) for v in values]


def read_ids_file(path: str | Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                  max_ids: int = DEFAULT_MAX_IDS) -> list[int]:
    """Ids from a file: one per line, or a CSV whose header has a `sample_id` column (other columns are ignored).

    Refused, naming each line: a byte-order mark, a blank line, a non-integer, a negative or 64-bit-overflowing
    number; also anything but a regular file (a FIFO would block, /dev/zero never ends), a file over `max_bytes`
    and more than `max_ids` ids.
    """
    path = Path(path)
    raw = _read_regular_file(path, max_bytes)
    for bom, encoding in _BOMS.items():
        if raw.startswith(bom):
            raise IdFileError(f"{path}: line 1 starts with a {encoding} byte-order mark; save the file as UTF-8 "
                              "without a BOM")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise IdFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not lines:
        raise IdFileError(f"{path}: the file is empty")
    _refuse_too_many(len(lines), max_ids, "lines", f"{path}: ")
    problems = [(n, "blank line") for n, line in enumerate(lines, 1) if not line.strip()]
    try:
        rows = [(n, row) for n, row in enumerate(csv.reader(lines), 1) if row and "".join(row).strip()]
    except csv.Error as exc:  # e.g. a NUL byte
        raise IdFileError(f"{path}: not a text file of ids ({exc})") from None
    header = [cell.strip() for cell in rows[0][1]] if rows else []
    if ID_COLUMN in header:  # a CSV: the ids are one column
        column = header.index(ID_COLUMN)
        problems += [(n, f"{len(row)} fields, the header has {len(header)}") for n, row in rows[1:]
                     if len(row) != len(header)]
        values = [(n, row[column]) for n, row in rows[1:] if len(row) == len(header)]
    elif len(header) > 1:
        raise IdFileError(f"{path}: line 1 looks like a CSV header ({len(header)} fields) without a "
                          f"{ID_COLUMN!r} column")
    else:
        values = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    problems += [(n, problem) for n, value in values if (problem := _check(value, echo=False))]
    _raise_if(problems, "line", f"{path}: ")
    if not values:
        raise IdFileError(f"{path}: no sample ids in it")
    return [int(value.strip()) for _, value in values]


def _read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes. Opened non-blocking and checked on the open descriptor,
    so a FIFO (or a file swapped for one after a check) cannot hang the call, and a device cannot fill memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise IdFileError(f"{path}: cannot read it ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _FILE_KINDS.items() if test(mode)), "not a regular file")
        raise IdFileError(f"{path}: is {kind}; give a regular file of ids")
    with os.fdopen(fd, "rb") as handle:
        try:
            raw = handle.read(max_bytes + 1)
        except OSError as exc:
            raise IdFileError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(raw) > max_bytes:
        raise IdFileError(f"{path}: larger than the limit of {max_bytes} bytes (params.yaml "
                          "requests.max_file_bytes); split it into several calls")
    return raw


def _refuse_too_many(count: int, max_ids: int, unit: str, prefix: str = "") -> None:
    if count > max_ids:
        raise IdFileError(f"{prefix}{count} {unit}, more than the limit of {max_ids} ids per call (params.yaml "
                          "requests.max_ids_per_call); split them into several calls, nothing was written")


def _check(value: str, echo: bool) -> str | None:
    """The problem with one id, or None. A file's text is never echoed; an argument is, shortened and escaped."""
    stripped = value.strip()
    shown = f": {printable(stripped, 24)}" if echo else ""
    if _INTEGER.fullmatch(stripped):
        # the length check first: int() of a huge digit string is slow (and refused past 4300 digits)
        if len(stripped.lstrip("0")) > len(str(MAX_SAMPLE_ID)) or int(stripped) > MAX_SAMPLE_ID:
            return f"out of range{shown} (sample ids are at most 2^63-1 = {MAX_SAMPLE_ID})"
        return None
    if _NEGATIVE.fullmatch(stripped):
        return f"negative number{shown} (sample ids are >= 0)"
    return f"not an integer{shown}"


def printable(text: str, limit: int | None = None) -> str:
    """`text` quoted, with control characters escaped (no terminal escapes reach a screen), cut to `limit`."""
    return repr(text if limit is None or len(text) <= limit else text[:limit] + "...")


def _raise_if(problems: list[tuple[int, str]], unit: str, prefix: str = "") -> None:
    """Refuse the whole input in one line, naming the first problems by line (or argument) number, in order."""
    if not problems:
        return
    listed = [f"{unit} {n}: {problem}" for n, problem in sorted(problems)[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        listed.append(f"and {len(problems) - MAX_LISTED} more")
    message = f"{prefix}{len(problems)} bad input(s), nothing was written: " + "; ".join(listed)
    raise IdFileError(message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 3] + "...")
