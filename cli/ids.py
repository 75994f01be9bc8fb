"""Where deletion requests come from: the ids of the current training data, and id files people hand in.

Used by `iau requests add` (cli/main.py). No Prefect here: intake is a person at a terminal, not a flow run.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from iau_core.config import load_params
from iau_core.data import load_bundle

ID_COLUMN = "sample_id"
MAX_LISTED = 20  # problems named one by one; beyond that, a count
_INTEGER = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")
_BOMS = {b"\xef\xbb\xbf": "UTF-8", b"\xff\xfe": "UTF-16 LE", b"\xfe\xff": "UTF-16 BE"}


class IdFileError(ValueError):
    """A malformed id file or argument; the message names each bad line."""


def training_ids(project_root: str | Path) -> set[int]:
    """The sample ids of D, the training set of the current data (params.yaml + data/ under project_root)."""
    root = Path(project_root)
    params = load_params(root / "params.yaml")
    bundle = load_bundle(params.data, root / params.data.root)
    return set(bundle.train.ids.tolist())


def parse_ids(values: list[str]) -> list[int]:
    """Sample ids typed on the command line: each a non-negative integer; every bad one is named."""
    _raise_if([(n, problem) for n, value in enumerate(values, 1) if (problem := _check(value))], "argument")
    return [int(v.strip()) for v in values]


def read_ids_file(path: str | Path) -> list[int]:
    """Ids from a file: one per line, or a CSV whose header has a `sample_id` column (other columns are ignored).

    Strict, because a silently skipped line is a record that is never forgotten: a byte-order mark, a blank line,
    a non-integer or a negative number is refused, naming each line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IdFileError(f"{path}: cannot read it ({exc.strerror})") from None
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
    problems = [(n, "blank line") for n, line in enumerate(lines, 1) if not line.strip()]
    rows = [(n, row) for n, row in enumerate(csv.reader(lines), 1) if row and "".join(row).strip()]
    header = [cell.strip() for cell in rows[0][1]] if rows else []
    if ID_COLUMN in header:  # a CSV: the ids are one column
        column = header.index(ID_COLUMN)
        problems += [(n, f"{len(row)} fields, the header has {len(header)}") for n, row in rows[1:]
                     if len(row) != len(header)]
        values = [(n, row[column]) for n, row in rows[1:] if len(row) == len(header)]
    elif len(header) > 1:
        raise IdFileError(f"{path}: line 1 looks like a CSV header without a {ID_COLUMN!r} column: {lines[0]!r}")
    else:
        values = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    problems += [(n, problem) for n, value in values if (problem := _check(value))]
    _raise_if(problems, "line", f"{path}: ")
    if not values:
        raise IdFileError(f"{path}: no sample ids in it")
    return [int(value.strip()) for _, value in values]


def _check(value: str) -> str | None:
    stripped = value.strip()
    if _INTEGER.fullmatch(stripped):
        return None
    if _NEGATIVE.fullmatch(stripped):
        return f"negative number {stripped} (sample ids are >= 0)"
    return f"not an integer: {value!r}"


def _raise_if(problems: list[tuple[int, str]], unit: str, prefix: str = "") -> None:
    """Refuse the whole input, naming each problem by its line (or argument) number, in order."""
    if not problems:
        return
    listed = [f"{unit} {n}: {problem}" for n, problem in sorted(problems)[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        listed.append(f"... and {len(problems) - MAX_LISTED} more")
    raise IdFileError(f"{prefix}{len(problems)} bad input(s), nothing was written:\n  " + "\n  ".join(listed))
