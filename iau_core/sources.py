"""Raw datasets -> the canonical on-disk format that DVC versions, and back.

Canonical format, one folder per dataset under the data root (``data/`` in the project):

    <root>/<name>/images.npy    uint8 array (N, C, H, W)            (image datasets)
    <root>/<name>/features.npy  float32 array (N, F)                (tables)
    <root>/<name>/records.csv   sample_id,label,source   (row i describes row i of the array)

Records are stored in sample_id order, whatever the order of the source files. ``sample_id`` is a stable
integer per record: a deletion request names it, and it never changes when subsets or
roles change. ``source`` is ``train`` or ``test`` (the dataset's own split, when it has one). How each kind
chooses its ids is in its reader (iau_core.datasets); an image folder also gets ``files.csv`` (sample_id,path).

After a deletion (``drop_records``) the folder also holds ``forgotten.csv`` (sample_id,source): a tombstone per
removed record, without its features or label, so the roles of the records that remain can be drawn exactly as
before the deletion (``iau_core.data``).

Materializing is deterministic: the same source files give byte-identical output, so a fresh clone that rebuilds
``data/`` matches the md5 committed in ``data.dvc``. Nothing is downloaded unless a dataset's section asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from iau_core.config import DataParams, DatasetSection, ParamsError, dataset_params
from iau_core.datasets import read_raw
from iau_core.datasets.base import CanonicalDataError, DatasetSourceMissing, records_frame

IMAGES_FILE = "images.npy"
FEATURES_FILE = "features.npy"
RECORDS_FILE = "records.csv"
FORGOTTEN_FILE = "forgotten.csv"  # in the dataset folder: the tombstones (sample_id,source)
FORGOTTEN_LIST = "forgotten.csv"  # at the project root, git-tracked: every record ever forgotten, and why
FORGOTTEN_COLUMNS = ["dataset", "sample_id", "note", "forgotten_at"]
ARRAY_FILES = (IMAGES_FILE, FEATURES_FILE)
# What the repository's data.dvc holds: a fresh clone rebuilds exactly these when neither the DVC cache nor the
# remote has them. A team's own dataset comes back with `dvc pull` from its remote.
SHIPPED = ("fashion_mnist", "digits")

__all__ = ["CanonicalDataError", "DatasetSourceMissing", "SHIPPED", "drop_records", "forgotten_ids", "materialize",
           "read_canonical", "read_forgotten", "read_forgotten_list", "records_frame", "unknown_ids"]


def materialized_root(data: DataParams, project: str | Path) -> Path:
    """The project's data folder (`data.root` under `project`), with `data.dataset` materialized into it first if
    it is not there yet: what a script that trains outside the flows needs before load_bundle."""
    root = Path(project) / data.root
    if not (root / data.dataset.name).is_dir():
        materialize(data.dataset, root, project)
    return root


def materialize(dataset: DatasetSection | str, root: str | Path, base_dir: str | Path = ".",
                forget: Iterable[int] = (), min_records: int = 0) -> Path:
    """Write a dataset (its config section, or a kind name with every default) in canonical form under
    ``root/<its name>`` and return that folder. Relative paths in the section are taken from ``base_dir``.

    Records are sorted by sample_id, so the output (and the roles drawn from it) never depends on the order of the
    rows in the team's files. ``forget``: ids listed in forgotten.csv for this dataset; they are left out and
    tombstoned exactly as a deletion leaves them (same bytes, same version), so a rebuild never brings them back.
    ``min_records``: fewer records (forgotten ones included) are refused before anything is written.

    Files are written under temporary names and renamed into place (the tombstones first), so an interruption
    never leaves a half-written dataset that looks complete.
    """
    if isinstance(dataset, str):
        try:
            dataset = dataset_params(dataset)
        except ParamsError as exc:
            raise ValueError(f"unknown dataset {dataset!r}: {exc}") from None
    raw = read_raw(dataset, Path(base_dir))
    folder = Path(root) / dataset.name
    order = np.argsort(raw.records["sample_id"].to_numpy(), kind="stable") if "sample_id" in raw.records \
        else np.arange(len(raw.records))
    features, records = raw.features[order], raw.records.iloc[order].reset_index(drop=True)
    problems = canonical_problems(features, records)
    if problems:
        raise CanonicalDataError(f"{dataset.kind} read from its files: " + "; ".join(problems))
    if len(records) < min_records:  # refused before anything is written
        raise CanonicalDataError(f"{dataset.kind} {dataset.name!r}: {len(records)} records, fewer than the "
                                 f"{min_records} its roles need at the least")
    extras = {name: frame.sort_values("sample_id", kind="stable").reset_index(drop=True)
              if "sample_id" in frame else frame for name, frame in raw.extras.items()}
    gone = records["sample_id"].isin(np.asarray(list(forget), dtype=np.int64)).to_numpy()
    tombstones = records.loc[gone, ["sample_id", "source"]]
    features, records = features[~gone], records[~gone]
    extras = {name: frame[~frame["sample_id"].isin(tombstones["sample_id"])] if "sample_id" in frame else frame
              for name, frame in extras.items()}
    folder.mkdir(parents=True, exist_ok=True)
    array_file = IMAGES_FILE if features.ndim == 4 else FEATURES_FILE
    stale = [folder / f for f in ARRAY_FILES if f != array_file]
    tables = {**({FORGOTTEN_FILE: tombstones} if len(tombstones) else {}), RECORDS_FILE: records, **extras}
    if not len(tombstones):
        stale.append(folder / FORGOTTEN_FILE)  # a rebuild with nothing forgotten keeps no old tombstones
    tmp = {name: folder / f".{name}.tmp" for name in (*tables, array_file)}
    with open(tmp[array_file], "wb") as handle:
        np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
    for name, frame in tables.items():
        frame.to_csv(tmp[name], index=False, lineterminator="\n")
    for name, path in tmp.items():  # tombstones first: an interrupted rebuild reads as an interrupted deletion
        os.replace(path, folder / name)
    for path in stale:  # a kind that changed from image to table must not leave two arrays behind
        path.unlink(missing_ok=True)
    return folder


def canonical_problems(features: np.ndarray, records: pd.DataFrame) -> list[str]:
    """Everything that keeps (features, records) from being a canonical dataset; empty when it is one."""
    problems = []
    if not ((features.dtype == np.uint8 and features.ndim == 4) or (features.dtype == np.float32
                                                                     and features.ndim == 2)):
        problems.append(f"the array must be uint8 images (N, C, H, W) or a float32 table (N, F), got "
                        f"{features.dtype} {features.shape}")
    if list(records.columns) != ["sample_id", "label", "source"]:
        problems.append(f"records columns must be sample_id,label,source, got {list(records.columns)}")
    elif len(records) != len(features):
        problems.append(f"{len(features)} rows in the array but {len(records)} records")
    elif not records["sample_id"].is_unique:
        dupes = records.loc[records["sample_id"].duplicated(), "sample_id"].head(5).tolist()
        problems.append(f"sample_id values are not unique (e.g. {dupes})")
    elif not records["source"].isin(["train", "test"]).all():
        problems.append(f"source must be 'train' or 'test', got {sorted(set(records['source']) - {'train', 'test'})}")
    elif (records["label"] < 0).any():
        problems.append("labels must be non-negative class indices")
    elif not records["sample_id"].is_monotonic_increasing:
        problems.append("records are not in sample_id order (materialized by an older version: run `python -m "
                        "iau_core.datasets`, then `dvc add data`)")
    return problems


def read_canonical(root: str | Path, name: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Load and check a materialized dataset: (uint8 images (N, C, H, W) or a float32 table (N, F), records
    aligned with them)."""
    folder = Path(root) / name
    arrays = [folder / f for f in ARRAY_FILES if (folder / f).is_file()]
    for path in (arrays[0] if arrays else folder / IMAGES_FILE, folder / RECORDS_FILE):
        if not path.is_file():
            raise CanonicalDataError(
                f"{path} is missing: run the flow (it pulls or rebuilds data/ and checks it against "
                "data.dvc), or `dvc pull`; for a new dataset, `python -m iau_core.datasets` first")
    _, features, records = load_files(folder)
    problems = canonical_problems(features, records)
    if problems:
        raise CanonicalDataError(f"{folder}: " + "; ".join(problems))
    return features, records


def load_files(folder: Path) -> tuple[Path, np.ndarray, pd.DataFrame]:
    """(the array's path, the array, the records) as they are on disk, unchecked (read_canonical checks them)."""
    array = next((folder / f for f in ARRAY_FILES if (folder / f).is_file()), folder / IMAGES_FILE)
    features = np.load(array, allow_pickle=False)
    records = pd.read_csv(folder / RECORDS_FILE, dtype={"sample_id": np.int64, "label": np.int64, "source": str})
    return array, features, records


def read_forgotten(root: str | Path, name: str) -> pd.DataFrame:
    """The tombstones of dataset ``name`` (sample_id, source, sorted by id); empty when nothing was forgotten."""
    path = Path(root) / name / FORGOTTEN_FILE
    if not path.is_file():
        return pd.DataFrame({"sample_id": pd.Series(dtype=np.int64), "source": pd.Series(dtype=str)})
    tombstones = pd.read_csv(path, dtype={"sample_id": np.int64, "source": str})
    if list(tombstones.columns) != ["sample_id", "source"]:
        raise CanonicalDataError(f"{path}: columns must be sample_id,source, got {list(tombstones.columns)}")
    return tombstones


def read_forgotten_list(project: str | Path) -> pd.DataFrame:
    """Every record ever forgotten, from the project's git-tracked forgotten.csv (dataset, sample_id, note,
    forgotten_at); empty when none was."""
    path = Path(project) / FORGOTTEN_LIST
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "sample_id" else str) for c in FORGOTTEN_COLUMNS})
    listed = pd.read_csv(path, dtype={"dataset": str, "sample_id": "int64", "note": str, "forgotten_at": str},
                         keep_default_na=False)
    if list(listed.columns) != FORGOTTEN_COLUMNS:
        raise CanonicalDataError(f"{path}: columns must be {','.join(FORGOTTEN_COLUMNS)}, got {list(listed.columns)}")
    return listed


def forgotten_ids(project: str | Path, name: str) -> np.ndarray:
    """The ids of dataset ``name`` that the project's forgotten.csv lists: what every rebuild leaves out."""
    listed = read_forgotten_list(project)
    return listed.loc[listed["dataset"] == name, "sample_id"].to_numpy(np.int64)


def drop_records(root: str | Path, name: str, sample_ids: Iterable[int]) -> Path:
    """Remove records from dataset ``name`` under ``root`` and tombstone them; return the dataset folder.

    Idempotent, and safe to run again after an interruption at any point: ids already tombstoned are fine, ids
    the dataset never held raise (naming them) before anything is written. Each file is replaced atomically, the
    tombstones first, so an interrupted drop is always finished by the next one. Tombstones are kept sorted by id,
    so the bytes (and the DVC version) depend on which records are gone, not on the order of the deletions: a
    rebuild from the raw sources that drops the same ids gives the same version.
    """
    folder = Path(root) / name
    ids = np.unique(np.asarray(list(sample_ids), dtype=np.int64))
    unknown = unknown_ids(root, name, ids)
    if unknown:
        raise CanonicalDataError(f"{folder}: sample ids {unknown} are not records of {name!r} "
                                 "(neither present nor forgotten)")
    array, images, records = load_files(folder)
    forgotten = read_forgotten(root, name)
    if not records["sample_id"].is_monotonic_increasing:  # the tombstones rely on id order being the original order
        raise CanonicalDataError(f"{folder}: records are not in sample_id order; cannot tombstone records")
    newly = records.loc[records["sample_id"].isin(ids), ["sample_id", "source"]]
    tombstones = pd.concat([forgotten, newly]).drop_duplicates("sample_id").sort_values("sample_id")
    # images rows match records, or (a drop interrupted after writing images) the records not yet tombstoned then
    aligned = records if len(images) == len(records) else records[~records["sample_id"].isin(forgotten["sample_id"])]
    if len(images) != len(aligned):
        raise CanonicalDataError(f"{folder}: {len(images)} images but {len(records)} records")
    gone = records["sample_id"].isin(tombstones["sample_id"])
    if not gone.any() and len(tombstones) == len(forgotten):
        return folder  # nothing to do: every id is already gone
    write_atomically(folder / FORGOTTEN_FILE, lambda h: tombstones.to_csv(h, index=False, lineterminator="\n"))
    keep = ~aligned["sample_id"].isin(tombstones["sample_id"]).to_numpy()
    if not keep.all():
        write_atomically(array, lambda h: np.save(h, np.ascontiguousarray(images[keep]), allow_pickle=False))
    for extra in sorted(folder.glob("*.csv")):  # e.g. an image folder's files.csv: a file name may be personal
        if extra.name in (RECORDS_FILE, FORGOTTEN_FILE):
            continue
        frame = pd.read_csv(extra, keep_default_na=False)
        if "sample_id" in frame and frame["sample_id"].isin(tombstones["sample_id"]).any():
            rest = frame[~frame["sample_id"].isin(tombstones["sample_id"])]
            write_atomically(extra, lambda h, rest=rest: rest.to_csv(h, index=False, lineterminator="\n"))
    remaining = records[~gone]
    write_atomically(folder / RECORDS_FILE, lambda h: remaining.to_csv(h, index=False, lineterminator="\n"))
    return folder


def unknown_ids(root: str | Path, name: str, sample_ids: Iterable[int]) -> list[int]:
    """The ids that dataset ``name`` never held: neither a present record nor a tombstone (sorted)."""
    folder = Path(root) / name
    records = pd.read_csv(folder / RECORDS_FILE, usecols=["sample_id"], dtype={"sample_id": np.int64})
    known = np.union1d(records["sample_id"], read_forgotten(root, name)["sample_id"])
    ids = np.unique(np.asarray(list(sample_ids), dtype=np.int64))
    return ids[~np.isin(ids, known)].tolist()


def write_atomically(path: Path, write: Callable[[IO], object]) -> None:
    """Write through a temporary file renamed into place: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
    os.replace(tmp, path)
