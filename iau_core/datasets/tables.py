"""Tabular data: a team's CSV or Parquet table, and Purchase100 in the format Shokri et al. published."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iau_core.config import Purchase100Params, TableParams
from iau_core.datasets.base import (
    CanonicalDataError,
    DatasetSourceMissing,
    RawDataset,
    checked_sample_ids,
    records_frame,
)

TABLE_READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}
PURCHASE100_URL = "https://github.com/privacytrustlab/datasets/raw/master/dataset_purchase.tgz"
PURCHASE100_FILE = "dataset_purchase"
PURCHASE100_FEATURES = 600


def read_table(params: TableParams, base_dir: Path) -> RawDataset:
    """The ids are the table's own, so a deletion request names them as the team knows them; the row order does
    not matter (iau_core.sources stores records sorted by id)."""
    path = base_dir / params.path
    if path.suffix.lower() not in TABLE_READERS:
        raise CanonicalDataError(f"{path}: a table must be .csv or .parquet, got {path.suffix!r}")
    if not path.is_file():
        raise DatasetSourceMissing(f"table {path} not found (data.dataset.path is relative to params.yaml)")
    if path.stat().st_size == 0:
        raise CanonicalDataError(f"{path}: the file is empty (0 bytes)")
    try:
        table = TABLE_READERS[path.suffix.lower()](path)
    except Exception as exc:  # pandas and pyarrow raise many types; the first line of any says what is wrong
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CanonicalDataError(f"{path}: not a readable {path.suffix.lstrip('.')} table ({type(exc).__name__}: "
                                 f"{first})") from None
    if table.empty:
        raise CanonicalDataError(f"{path}: no rows (columns {list(table.columns)[:5]}"
                                 f"{' ...' if table.shape[1] > 5 else ''} but no records)")
    special = [params.sample_id_column, params.label_column] + ([params.source_column] if params.source_column
                                                                 else [])
    features = list(params.feature_columns or [c for c in table.columns if c not in special])
    missing = [c for c in special + features if c not in table.columns]
    if missing:
        raise CanonicalDataError(f"{path}: no column(s) {missing}; it has {list(table.columns)}")
    if not features:
        raise CanonicalDataError(f"{path}: no feature columns besides {special}")
    not_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(table[c])]
    if not_numeric:
        raise CanonicalDataError(f"{path}: feature columns must be numeric; {not_numeric} are not (encode them "
                                 "first, e.g. one-hot)")
    values = table[features].to_numpy(np.float32)
    if not np.isfinite(values).all():
        bad = [c for c in features if not np.isfinite(table[c].to_numpy(np.float64)).all()]
        raise CanonicalDataError(f"{path}: missing or infinite values in {bad}; impute or drop them first")
    ids = checked_sample_ids(table[params.sample_id_column], f"{path}: column {params.sample_id_column!r}")
    if not pd.api.types.is_integer_dtype(table[params.label_column]):
        raise CanonicalDataError(f"{path}: labels ({params.label_column!r}) must be integers, got "
                                 f"{table[params.label_column].dtype}")
    duplicated = table[params.sample_id_column].duplicated(keep=False)
    if duplicated.any():
        dupes = sorted(table.loc[duplicated, params.sample_id_column].unique().tolist())
        raise CanonicalDataError(f"{path}: column {params.sample_id_column!r} has {len(dupes)} duplicate id(s), e.g. "
                                 f"{dupes[:5]}; every record needs its own id")
    labels = np.unique(table[params.label_column].to_numpy())
    if len(labels) and (labels[0] != 0 or labels[-1] != len(labels) - 1):
        raise CanonicalDataError(f"{path}: column {params.label_column!r} has labels {labels[:10].tolist()}"
                                 f"{' ...' if len(labels) > 10 else ''}; labels must be 0..K-1 with every class "
                                 f"present: map them to 0..{len(labels) - 1} first")
    sources = table[params.source_column].astype(str).to_numpy() if params.source_column \
        else np.full(len(table), "train")
    records = records_frame(table[params.label_column].to_numpy(), sources, ids)
    return RawDataset(values, records)


def read_purchase100(params: Purchase100Params, base_dir: Path) -> RawDataset:
    """197,324 purchase histories: per line the label (1..100), then 600 binary features. ids follow the lines."""
    root = base_dir / (params.raw_root or "raw")
    path = root / PURCHASE100_FILE
    if params.download and not path.is_file():
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(PURCHASE100_URL, str(root))
    if not path.is_file():
        raise DatasetSourceMissing(f"{path} not found. Set data.dataset.download: true where a network exists, or "
                                   f"extract {PURCHASE100_URL} into {root}.")
    table = pd.read_csv(path, header=None, dtype=np.float32)
    if table.shape[1] != 1 + PURCHASE100_FEATURES:
        raise CanonicalDataError(f"{path}: expected a label and {PURCHASE100_FEATURES} features per line, got "
                                 f"{table.shape[1]} columns")
    labels = table[0].to_numpy()
    if labels.min() < 1 or labels.max() > 100 or not np.all(labels == np.round(labels)):
        raise CanonicalDataError(f"{path}: labels must be the integers 1..100")
    return RawDataset(np.ascontiguousarray(table.iloc[:, 1:].to_numpy(np.float32)),
                      records_frame(labels.astype(np.int64) - 1, ["train"] * len(labels)))
