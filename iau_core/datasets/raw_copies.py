"""The raw source forgets too: which of a dataset's own files still hold forgotten records, and rewriting them.

`data/` drops a forgotten record at once (iau_core.sources.drop_records), but the files it was built from (a
team's table, an image folder) keep it until someone removes it there. `holders` names each such file;
`forget_in_raw` removes the records for good: a table is rewritten without their rows, in the same format (the
other rows' text unchanged), through a temporary file renamed into place; an image folder's files are deleted,
and a manifest loses their lines the same way. A published dataset's own files (MNIST, CIFAR, digits...) are not
the team's to rewrite: they are named, with why.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from iau_core.config import DatasetSection, ImageFolderParams, TableParams
from iau_core.datasets.image_folder import image_files, path_id


@dataclass
class RawCopies:
    """Files of a dataset's raw source and the forgotten records each holds (sample ids)."""

    holders: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # sources that cannot be checked or rewritten, and why


def holders(dataset: DatasetSection, base_dir: Path, forgotten: np.ndarray) -> RawCopies:
    """Every raw file of `dataset` (paths relative to `base_dir`, params.yaml's folder) holding a forgotten id."""
    forgotten = np.asarray(forgotten, dtype=np.int64)
    found = RawCopies()
    if isinstance(dataset, TableParams | ImageFolderParams) and not (base_dir / dataset.path).exists():
        found.notes.append(f"{base_dir / dataset.path} (data.dataset.path) is not there: whether a copy of it "
                           "elsewhere holds forgotten records is unknown")
    elif isinstance(dataset, TableParams):
        path = base_dir / dataset.path
        ids = table_ids(path, dataset.sample_id_column)
        held = sorted(ids[np.isin(ids, forgotten)].tolist())
        if held:
            found.holders[str(path)] = held
    elif isinstance(dataset, ImageFolderParams):
        for file, sample_id in image_ids(dataset, base_dir).items():
            if sample_id in set(forgotten.tolist()):
                found.holders[str(file)] = [sample_id]
        if dataset.ids == "manifest" and found.holders:
            manifest = base_dir / dataset.manifest
            found.holders[str(manifest)] = sorted(i for ids in found.holders.values() for i in ids)
    elif len(forgotten):
        found.notes.append(f"data.dataset {dataset.kind!r} is a published dataset read from its own files: they "
                           f"still hold the {len(forgotten)} forgotten record(s); delete those files when the "
                           "data is rebuilt no more (data/ is restored from DVC, not from them)")
    return found


def forget_in_raw(dataset: DatasetSection, base_dir: Path, forgotten: np.ndarray) -> list[str]:
    """Remove the forgotten records from the team's raw files; the files rewritten or deleted. Idempotent."""
    forgotten = np.asarray(forgotten, dtype=np.int64)
    changed: list[str] = []
    if isinstance(dataset, TableParams):
        path = base_dir / dataset.path
        if path.is_file() and rewrite_table(path, dataset.sample_id_column, forgotten):
            changed.append(str(path))
    elif isinstance(dataset, ImageFolderParams):
        doomed = [file for file, sample_id in image_ids(dataset, base_dir).items() if sample_id in set(forgotten)]
        if dataset.ids == "manifest" and doomed:  # first: a manifest naming a deleted file refuses every rebuild
            rewrite_table(base_dir / dataset.manifest, "sample_id", forgotten)
            changed.append(str(base_dir / dataset.manifest))
        for file in doomed:
            file.unlink(missing_ok=True)
            changed.append(str(file))
    return changed


def table_ids(path: Path, column: str) -> np.ndarray:
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, usecols=[column])[column].to_numpy(np.int64)
    return pd.read_parquet(path, columns=[column])[column].to_numpy(np.int64)


def image_ids(dataset: ImageFolderParams, base_dir: Path) -> dict[Path, int]:
    """Each image file of the folder and its sample id, as the reader gives them."""
    folder = base_dir / dataset.path
    if not folder.is_dir():
        return {}
    if dataset.ids == "manifest":
        manifest = pd.read_csv(base_dir / dataset.manifest, usecols=["sample_id", "path"])
        return {folder / p: int(i) for i, p in zip(manifest["sample_id"], manifest["path"], strict=True)
                if (folder / p).is_file()}
    return {folder / p: path_id(p) for p in image_files(folder)}


def rewrite_table(path: Path, column: str, forgotten: np.ndarray) -> bool:
    """The table without the rows whose `column` is forgotten, same format; False when none was there. A CSV is
    read as text, so every other cell is written back exactly as it was."""
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        gone = table[column].astype(np.int64).isin(forgotten)
        if not gone.any():
            return False
        replace_atomically(path, lambda tmp: table[~gone].to_csv(tmp, index=False, lineterminator="\n"))
        return True
    table = pd.read_parquet(path)
    gone = table[column].isin(forgotten)
    if not gone.any():
        return False
    replace_atomically(path, lambda tmp: table[~gone].to_parquet(tmp, index=False))
    return True


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write a sibling temporary file, flush it to disk, rename it over `path`: the old file or the new one."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def raw_sources(dataset: DatasetSection, base_dir: Path, ids: list[int]) -> dict[int, str]:
    """Where each id comes from in the raw source: a table's row (its cells as text) or an image's file; for a
    published dataset, its kind (its records are numbered in the order of its own files)."""
    wanted = set(ids)
    if isinstance(dataset, TableParams):
        path = base_dir / dataset.path
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            table = pd.read_parquet(path).astype(str)
        column = table[dataset.sample_id_column].astype(np.int64)
        rows = table[column.isin(wanted)]
        return {int(i): f"{dataset.path} row: " + ",".join(f"{c}={v}" for c, v in row.items())
                for i, (_, row) in zip(column[column.isin(wanted)], rows.iterrows(), strict=True)}
    if isinstance(dataset, ImageFolderParams):
        folder = Path(dataset.path)
        return {sample_id: str(folder / file.relative_to(base_dir / dataset.path))
                for file, sample_id in image_ids(dataset, base_dir).items() if sample_id in wanted}
    return {i: f"{dataset.kind} record {i} (numbered in the order of its own files)" for i in ids}
