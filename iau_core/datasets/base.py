"""What every dataset reader returns, and the errors they raise. Readers turn a dataset's own files into arrays
and a records frame; iau_core.sources writes them in the canonical, DVC-tracked format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


class DatasetSourceMissing(FileNotFoundError):
    """The raw files a dataset is built from are not on this machine."""


class CanonicalDataError(ValueError):
    """A dataset's files, or a materialized dataset folder, are not in the format they should be."""


@dataclass(frozen=True)
class RawDataset:
    """features: uint8 images (N, C, H, W) or a float32 table (N, F); records: sample_id,label,source, row i
    describing features[i]; extras: further CSVs to write beside records.csv (e.g. an image folder's
    sample_id -> file path)."""

    features: np.ndarray
    records: pd.DataFrame
    extras: dict[str, pd.DataFrame] = field(default_factory=dict)


MAX_SAMPLE_ID = 2**63 - 1  # the ledger stores ids as signed 64-bit integers


def checked_sample_ids(ids: pd.Series, where: str) -> np.ndarray:
    """The ids of a team's records as the deletion ledger will take them: integers in 0..2^63-1. Refused here,
    when the data is built, so no record enters D that a deletion request could not name later."""
    if not pd.api.types.is_integer_dtype(ids):
        texts = ids[ids.map(lambda v: isinstance(v, str))]
        if len(texts):
            raise CanonicalDataError(f"{where}: sample ids must be integers, got text such as {texts.iloc[0]!r}; "
                                     "give each record a stable integer id in a new column and name that column "
                                     "(docs/datasets.md, 'Ids that are text')")
        raise CanonicalDataError(f"{where}: sample ids must be integers, got {ids.dtype}")
    negative = ids[ids < 0]
    if len(negative):
        raise CanonicalDataError(f"{where}: sample ids must be >= 0 (a deletion request cannot name a negative id); "
                                 f"{len(negative)} are negative, e.g. {sorted(negative.tolist())[:5]}")
    if ids.dtype == np.uint64 and (ids > MAX_SAMPLE_ID).any():
        raise CanonicalDataError(f"{where}: sample ids must be below 2^63 (the ledger's 64-bit integers); "
                                 f"e.g. {ids[ids > MAX_SAMPLE_ID].iloc[0]}")
    return ids.to_numpy(np.int64)


def records_frame(labels: np.ndarray, sources: list[str] | np.ndarray,
                  sample_ids: np.ndarray | None = None) -> pd.DataFrame:
    """The records of a dataset; ids default to the row numbers (the order of the dataset's own files)."""
    ids = np.arange(len(labels), dtype=np.int64) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    return pd.DataFrame({"sample_id": ids, "label": np.asarray(labels, dtype=np.int64),
                         "source": list(sources)})


def first_existing(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def require_files(folder: Path, names: list[str], how_to_get: str) -> None:
    """Refuse, naming every missing file and how to get it, before any reading starts."""
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetSourceMissing(f"{missing} not found in {folder}. {how_to_get}")
