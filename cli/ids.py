"""Where deletion requests come from: the ids of the current training data, and the ids people hand in (read by
iau_core.ids, the one strict reader, which selection `ids` uses too).

Used by `iau requests add` (cli/main.py). No Prefect here: intake is a person at a terminal, not a flow run.
"""

from __future__ import annotations

from pathlib import Path

from iau_core.config import load_params
from iau_core.data import load_bundle
from iau_core.ids import IdFileError, parse_ids, read_ids_file

__all__ = ["IdFileError", "parse_ids", "read_ids_file", "training_ids"]


def training_ids(project_root: str | Path) -> set[int]:
    """The sample ids of D, the training set of the current data (params.yaml + data/ under project_root)."""
    root = Path(project_root)
    params = load_params(root / "params.yaml")
    bundle = load_bundle(params.data, root / params.data.root)
    return set(bundle.train.ids.tolist())
