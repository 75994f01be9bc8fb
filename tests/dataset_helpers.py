"""What the dataset test modules share (not a test module): materializing a data section the way params.yaml names
it and reading the canonical files back, and a team's table of patients as it really comes (ids neither dense nor
ordered). Used by test_datasets.py, test_datasets_tables.py and test_datasets_roles.py."""

from __future__ import annotations

import numpy as np
import pandas as pd

from iau_core.config import dataset_params
from iau_core.sources import materialize, read_canonical


def build(tmp_path, section: dict | str):
    """Materialize a section (paths relative to tmp_path, as params.yaml's folder) and read it back."""
    params = dataset_params(section)
    folder = materialize(params, tmp_path / "data", base_dir=tmp_path)
    return (*read_canonical(tmp_path / "data", params.name), folder)


def patients(rows: int = 420, labels=(0, 1)) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"patient_id": rng.permutation(rows) * 5 + 1000, "diagnosis": rng.choice(labels, rows),
                         "size": rng.normal(800, 300, rows), "smooth": rng.normal(0.1, 0.01, rows)})
