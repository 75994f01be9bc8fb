"""Where deletion requests come from: the ids of the current data's roles (what `iau data ids` lists and
`iau requests add` checks against), and the ids people hand in (read by iau_core.ids, the one strict reader,
which selection `ids` uses too).

Used by cli/main.py. No Prefect here: intake is a person at a terminal, not a flow run. Roles are read through
iau_core.data.load_bundle, the same function the flows cut their roles with, so both always agree.
"""

from __future__ import annotations

from pathlib import Path

from iau_core.config import Params, load_params
from iau_core.data import DataBundle, Split, load_bundle
from iau_core.ids import IdFileError, parse_ids, read_ids_file
from iau_core.runtime import prepare_process

__all__ = ["ROLES", "IdFileError", "parse_ids", "read_ids_file", "role_ids", "training_ids"]

# `iau data ids --role` names -> the bundle's split. train is D: the only records a deletion request may name.
ROLES = {"train": "train", "val": "val", "test": "test", "shadow": "shadow_pool"}


def current_bundle(project_root: str | Path) -> tuple[Params, DataBundle]:
    """params.yaml and the roles of the data under project_root (this process takes its thread share first)."""
    root = Path(project_root)
    params = load_params(root / "params.yaml")
    prepare_process(params.threads)
    return params, load_bundle(params.data, root / params.data.root)


def role_ids(project_root: str | Path, role: str = "train") -> list[int]:
    """The sample ids of one role of the current data, ascending."""
    split: Split = getattr(current_bundle(project_root)[1], ROLES[role])
    return sorted(split.ids.tolist())


def training_ids(project_root: str | Path) -> set[int]:
    """The sample ids of D, the training set of the current data (params.yaml + data/ under project_root)."""
    return set(role_ids(project_root, "train"))
