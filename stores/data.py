"""DVC data plumbing: the data under `data/` is exactly the version `data.dvc` names, and its md5 is the
`data_version` every run records.

- `data/` absent: check it out from the DVC cache, else pull it from the default remote, else rebuild it from
  the raw sources (iau_core.sources; deterministic, so it matches the committed md5 or is refused).
- `data/` present but different from `data.dvc`: refuse with DataVersionMismatch and touch nothing.
- Then the version is in the cache and on the default remote, so `dvc status` (and `dvc status -c`) is clean.

Forgetting (issue 9, "the data forgets too"): `forget_records` removes records from `data/`, makes that the new
version in `data.dvc` and on the remote, and lists them in the git-tracked `forgotten.csv`, which every rebuild from
the raw sources applies. `purge` (stores/purge.py) then removes the older versions that still hold them from the
cache and remote.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from dvc.exceptions import DvcException
from dvc.repo import Repo

from iau_core.config import DataParams
from iau_core.sources import (
    FORGOTTEN_COLUMNS,
    FORGOTTEN_LIST,
    RECORDS_FILE,
    SHIPPED,
    CanonicalDataError,
    drop_records,
    forgotten_ids,
    materialize,
    read_canonical,
    read_forgotten_list,
    unknown_ids,
    write_atomically,
)

DVC_FILE = "data.dvc"
log = logging.getLogger(__name__)


class DataVersionMismatch(RuntimeError):
    """The data on disk is not the version data.dvc records."""


def recorded_version(repo_root: Path) -> tuple[str, Path]:
    """(md5 recorded in data.dvc, the folder it tracks)."""
    dvc_file = repo_root / DVC_FILE
    if not dvc_file.is_file():
        raise FileNotFoundError(f"{dvc_file} is missing: the data is versioned by it (docs/datasets.md, 'Data (DVC)')")
    out = yaml.safe_load(dvc_file.read_text())["outs"][0]
    return out["md5"], repo_root / out["path"]


def version_or_none(root: Path) -> str | None:
    """The md5 data.dvc records, or None where the data is not versioned yet (or data.dvc is unreadable)."""
    try:
        return recorded_version(root)[0]
    except (OSError, KeyError, TypeError, IndexError, yaml.YAMLError):
        return None


def committed_to_git(root: Path) -> bool | None:
    """Whether data.dvc is as git's HEAD has it (None: not a git checkout, or git is not there)."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--", "data.dvc"], cwd=root, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return None if done.returncode != 0 else not done.stdout.strip()


def ensure_data(repo_root: str | Path) -> str:
    """Make `data/` the version recorded in data.dvc (or refuse) and return its md5, the data_version."""
    repo_root = Path(repo_root).resolve()
    expected, data_dir = recorded_version(repo_root)
    with Repo(str(repo_root)) as repo:
        if not data_dir.exists():
            restore(repo, repo_root, data_dir)
        # targets are absolute: DVC resolves relative ones against the process's cwd, not the repo
        status = repo.status(targets=[str(repo_root / DVC_FILE)])
        states = [s for changes in status.values() for c in changes for s in c.get("changed outs", {}).values()]
        state = states[0] if states else None
        if state == "not in cache":  # DVC cannot tell 'matches' from 'modified' without the cache: hash it
            commit_if_unchanged(repo, repo_root, expected, data_dir)
        elif state is not None:
            raise mismatch(data_dir, expected, state)
        push_to_default_remote(repo, repo_root)
    return expected


def checked_data(repo_root: str | Path, data: DataParams, version: bool = True) -> str | None:
    """ensure_data (with `version`), first making sure the dataset params.yaml names is there to check: what the
    command lines call before Prefect starts, so a documented mistake ends in one line naming its fix. A nightly
    checks the folder only: ensure_data may rewrite data.dvc, which is the lock holder's to change."""
    repo_root = Path(repo_root).resolve()
    _, data_dir = recorded_version(repo_root)
    folder = repo_root / data.root / data.dataset.name
    if data_dir.exists() and not (folder / "records.csv").is_file():
        raise FileNotFoundError(f"{folder} is missing (params.yaml's data.dataset is {data.dataset.name!r}): build it "
                                "with `.venv/bin/python -m iau_core.datasets`, then `.venv/bin/dvc add data` and "
                                "commit data.dvc (docs/datasets.md, 'Bring your own data')")
    return ensure_data(repo_root) if version else None


def restore(repo: Repo, repo_root: Path, data_dir: Path) -> None:
    """Bring back an absent data/: from the cache, the default remote, or the raw sources."""
    for how in ("checkout", "pull"):
        try:
            getattr(repo, how)(targets=[str(repo_root / DVC_FILE)])
            log.info("data/ restored by dvc %s", how)
            return
        except DvcException as exc:
            log.info("dvc %s could not restore data/ (%s)", how, str(exc).splitlines()[0])
            shutil.rmtree(data_dir, ignore_errors=True)  # a failed checkout may leave a partial folder
    log.info("rebuilding data/ from the raw sources of %s", list(SHIPPED))
    staging = Path(tempfile.mkdtemp(prefix=".data-staging-", dir=repo_root))
    try:
        for name in SHIPPED:  # a forgotten record never comes back; same drops, same bytes, same version
            materialize(name, staging, repo_root, forget=forgotten_ids(repo_root, name))
        os.replace(staging, data_dir)  # appears whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def commit_if_unchanged(repo: Repo, repo_root: Path, expected: str, data_dir: Path) -> None:
    """Save data/ to the cache if it hashes to the recorded md5; otherwise put data.dvc back and refuse."""
    dvc_file = repo_root / DVC_FILE
    recorded = dvc_file.read_bytes()
    repo.commit(str(dvc_file), force=True)
    found, _ = recorded_version(repo_root)
    if found != expected:
        dvc_file.write_bytes(recorded)  # data.dvc is the contract: only a person changes it
        raise mismatch(data_dir, expected, f"modified (hashes to {found})")


def push_to_default_remote(repo: Repo, repo_root: Path) -> None:
    """Keep the default remote complete, so a fresh checkout can `dvc pull`; no remote configured is fine."""
    if not repo.config["core"].get("remote"):
        log.warning("no default DVC remote configured: data/ is only in the local cache")
        return
    repo.push(targets=[str(repo_root / DVC_FILE)])


def mismatch(data_dir: Path, expected: str, state: str) -> DataVersionMismatch:
    return DataVersionMismatch(
        f"{data_dir} does not match data.dvc (md5 {expected}): {state}. Nothing was changed. "
        f"To go back to the committed data: `dvc checkout --force {DVC_FILE}` (discards your edits to data/), "
        "or delete data/ and run again. To make the new data the version: `dvc add data`, then commit data.dvc.")


# --- forgetting ---------------------------------------------------------------------------------------------------

def forget_records(repo_root: str | Path, dataset: str, sample_ids: Iterable[int], note: str) -> str:
    """Remove records from the versioned data for good; return the new data_version (the md5 in data.dvc).

    Steps: list the ids in forgotten.csv (first, so a crash at any later point is finished by calling again with
    the same ids), drop every listed id of the dataset from data/, `dvc add` (data.dvc names the new version), push
    to the default remote. Calling again with the same ids adds nothing and returns the same version. data.dvc and
    forgotten.csv change in the work tree; committing them to git is the caller's step.
    """
    repo_root = Path(repo_root).resolve()
    ids = sorted({int(i) for i in sample_ids})
    if not ids:
        raise ValueError("forget_records needs at least one sample id")
    _, data_dir = recorded_version(repo_root)
    listed = read_forgotten_list(repo_root)
    retry = set(ids) <= set(listed.loc[listed["dataset"] == dataset, "sample_id"])
    if not retry:
        ensure_data(repo_root)  # a new deletion starts from exactly the committed version, or is refused
    elif not data_dir.exists():
        with Repo(str(repo_root)) as repo:  # mid-retry data/ may differ from data.dvc: any copy is finished below
            restore(repo, repo_root, data_dir)
    if not (data_dir / dataset / RECORDS_FILE).is_file():
        raise ValueError(f"unknown dataset {dataset!r}: {data_dir / dataset} holds no canonical dataset")
    unknown = unknown_ids(data_dir, dataset, ids)
    if unknown:
        raise ValueError(f"sample ids {unknown} are not records of {dataset!r} in {data_dir}; nothing was changed")
    append_forgotten(repo_root, listed, dataset, ids, note)
    listed = read_forgotten_list(repo_root)
    drop_records(data_dir, dataset, listed.loc[listed["dataset"] == dataset, "sample_id"])
    with Repo(str(repo_root)) as repo:
        repo.add(str(data_dir))
        push_to_default_remote(repo, repo_root)
    return recorded_version(repo_root)[0]


def forgetting_problems(repo_root: str | Path, dataset: str, sample_ids: Iterable[int]) -> list[str]:
    """Everything that would stop `forget_records` from finishing, checked before a batch unlearns (a failure
    after a version is registered would leave the batch stuck): the data's layout, the ids' presence, the
    default remote. Empty when forgetting can go through."""
    repo_root = Path(repo_root).resolve()
    _, data_dir = recorded_version(repo_root)
    if not (data_dir / dataset / RECORDS_FILE).is_file():
        return [f"{data_dir / dataset} holds no canonical dataset (data.dataset.name is {dataset!r})"]
    problems = []
    try:
        _, records = read_canonical(data_dir, dataset)
    except CanonicalDataError as exc:
        problems.append(str(exc))
    else:
        ids = np.unique(np.asarray(list(sample_ids), dtype=np.int64))
        absent = ids[~np.isin(ids, records["sample_id"].to_numpy())].tolist()
        if absent:
            problems.append(f"sample ids {absent[:10]} are not present in {data_dir / dataset} (forgotten already, "
                            "or never records of it)")
    if remote := remote_problem(repo_root):
        problems.append(remote)
    return problems


def remote_problem(repo_root: Path) -> str | None:
    """Why the default DVC remote could not take the new version, or None (none configured is fine: the version
    then stays in the cache only, as forget_records warns)."""
    with Repo(str(repo_root)) as repo:
        name = repo.config["core"].get("remote")
        if not name:
            return None
        try:
            odb = repo.cloud.get_remote_odb(name)
            if odb.fs.protocol != "local":
                return None if odb.fs.exists(odb.path) else f"DVC remote {name!r}: its path does not exist"
        except Exception as exc:  # noqa: BLE001 - the message may carry the URL or credentials; the type does not
            return f"DVC remote {name!r} cannot be reached ({type(exc).__name__})"
    folder = Path(odb.path)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        return f"DVC remote {name!r}: {existing} is not a writable folder"
    return None


def append_forgotten(repo_root: Path, listed: pd.DataFrame, dataset: str, ids: list[int], note: str) -> None:
    """Add the ids not listed yet, in one atomic rewrite (a retry never lists an id twice)."""
    mine = set(listed.loc[listed["dataset"] == dataset, "sample_id"])
    new = [i for i in ids if i not in mine]
    if not new:
        return
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = pd.DataFrame({"dataset": dataset, "sample_id": new, "note": note, "forgotten_at": now})
    both = pd.concat([listed, rows], ignore_index=True)[FORGOTTEN_COLUMNS]
    write_atomically(repo_root / FORGOTTEN_LIST, lambda h: both.to_csv(h, index=False, lineterminator="\n"))
