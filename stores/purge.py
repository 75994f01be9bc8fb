"""Purging old data versions that still hold forgotten records, from the DVC cache and the default remote.

Only the operator's `iau purge` calls it; the forgetting itself (forgotten.csv, the new version) is
stores/data.py's `forget_records`.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path

import pandas as pd
import yaml
from dvc.repo import Repo

from iau_core.sources import RECORDS_FILE, write_atomically
from stores.data import DVC_FILE, read_forgotten_list, recorded_version

PURGE_PLAN = Path(".dvc") / "tmp" / "purge-plan.json"  # a purge's removals, kept until all are done


@dataclass(frozen=True)
class RemovedObject:
    store: str  # "cache" or "remote '<name>'"
    path: str
    size: int


@dataclass(frozen=True)
class PurgeReport:
    """What a purge removed, and what it could not remove (with why); names no credentials."""

    current_version: str
    removed_versions: tuple[str, ...] = ()
    removed_objects: tuple[RemovedObject, ...] = ()
    kept_versions: tuple[str, ...] = ()  # older versions that hold no forgotten record
    not_removed: tuple[str, ...] = ()

    @property
    def bytes_removed(self) -> int:
        return sum(o.size for o in self.removed_objects)

    def to_dict(self) -> dict:
        return {**asdict(self), "bytes_removed": self.bytes_removed}

    def to_markdown(self) -> str:
        lines = [f"# Purge of data versions holding forgotten records\n\ncurrent version: `{self.current_version}`\n",
                 f"removed versions ({len(self.removed_versions)}): "
                 + (", ".join(f"`{v}`" for v in self.removed_versions) or "none"),
                 f"removed objects: {len(self.removed_objects)}, {self.bytes_removed:,} bytes"]
        lines += [f"- {o.store}: `{o.path}` ({o.size:,} bytes)" for o in self.removed_objects]
        lines.append("kept older versions (no forgotten record): "
                     + (", ".join(f"`{v}`" for v in self.kept_versions) or "none"))
        lines.append("could not remove:" + ("" if self.not_removed else " nothing"))
        lines += [f"- {why}" for why in self.not_removed]
        return "\n".join(lines) + "\n"


@dataclass
class Store:
    """One local DVC object store (the cache or a local remote), in the DVC 3 layout files/md5/xx/yyyy."""

    label: str
    root: Path

    def path(self, md5: str) -> Path:
        return self.root / md5[:2] / md5[2:]

    def read(self, md5: str) -> bytes | None:
        path = self.path(md5)
        return path.read_bytes() if path.is_file() else None


@dataclass
class Scan:
    manifests: dict[str, list[dict]] = field(default_factory=dict)  # version (md5.dir) -> entries
    unreadable: list[str] = field(default_factory=list)


def purge(repo_root: str | Path) -> PurgeReport:
    """Remove from the DVC cache and the default remote every older data version that holds a forgotten record.

    A version is a `.dir` manifest other than the one data.dvc names; it goes, with the file objects only such
    versions use, when its records.csv lists an id in forgotten.csv. Objects any other version (or any .dvc file of
    the work tree) uses stay. The removals are written to a plan first and the plan is finished by the next run if
    this one is killed, so no object holding a forgotten record is left behind unreferenced. A second run removes
    nothing.
    """
    repo_root = Path(repo_root).resolve()
    current, _ = recorded_version(repo_root)
    with Repo(str(repo_root)) as repo, repo.lock:  # no push or checkout runs while objects disappear
        stores, not_removed = object_stores(repo)
        finished = finish_plan(repo_root)
        scan = scan_manifests(stores)
        not_removed += [f"manifest {p} is not readable JSON; kept" for p in scan.unreadable]
        if current not in scan.manifests:
            return PurgeReport(current, removed_objects=finished, not_removed=(
                *not_removed, f"the current version {current} is in no local store: cannot tell which objects "
                "it uses, so nothing else was removed (run `dvc commit` or `dvc push` first)"))
        in_use = {out.hash_info.value for out in repo.index.outs if out.hash_info and out.hash_info.value}
        doomed, kept, undecided = classify(scan, stores, read_forgotten_list(repo_root), in_use | {current})
        keep = {md5 for v, entries in scan.manifests.items() if v not in doomed for md5 in entry_md5s(entries)}
        plan = list(dict.fromkeys(  # an object two doomed versions share is listed once
            RemovedObject(store.label, str(path), path.stat().st_size)
            for version in doomed for store in stores
            for md5 in [*(m for m in entry_md5s(scan.manifests[version]) if m not in keep), version]
            if (path := store.path(md5)).is_file()))
        if plan:
            write_atomically(repo_root / PURGE_PLAN,
                             lambda h: h.write(json.dumps([asdict(o) for o in plan]).encode()))
            finish_plan(repo_root)
    return PurgeReport(current, tuple(doomed), (*finished, *plan), tuple(kept),
                       (*not_removed, *undecided, *git_history_note(repo_root, doomed)))


def object_stores(repo: Repo) -> tuple[list[Store], list[str]]:
    """The cache and the default remote when it is a local folder; what cannot be purged, said without secrets."""
    stores, notes = [Store("cache", Path(repo.cache.local.path))], []
    name = repo.config["core"].get("remote")
    if not name:
        notes.append("no default DVC remote is configured: only the cache was purged")
    else:
        try:
            odb = repo.cloud.get_remote_odb(name)
        except Exception as exc:  # noqa: BLE001 - the message may carry the URL; the type name does not
            notes.append(f"remote {name!r} could not be opened ({type(exc).__name__}): not purged")
        else:
            if odb.fs.protocol == "local":
                stores.append(Store(f"remote {name!r}", Path(odb.path)))
            else:
                notes.append(f"remote {name!r} is not a local folder ({odb.fs.protocol}): not purged; remove the "
                             "versions named here with the store's own tools")
    others = sorted(set(repo.config["remote"]) - {name})
    if others:
        notes.append(f"remotes {others} are not the default: not purged")
    return stores, notes


def scan_manifests(stores: list[Store]) -> Scan:
    scan = Scan()
    for store in stores:
        for path in sorted(store.root.glob("*/*.dir")):
            version = path.parent.name + path.name
            if version in scan.manifests:
                continue
            try:
                scan.manifests[version] = json.loads(path.read_bytes())
            except (OSError, ValueError):
                scan.unreadable.append(f"{store.label}: {path}")
    return scan


def classify(scan: Scan, stores: list[Store], forgotten: pd.DataFrame,
             in_use: set[str]) -> tuple[list[str], list[str], list[str]]:
    """(versions to remove, older versions kept, why some could not be decided) among the non-current ones."""
    doomed, kept, undecided = [], [], []
    for version, entries in scan.manifests.items():
        if version in in_use:
            continue
        relpaths = {e.get("relpath"): e.get("md5") for e in entries}
        holds, unknown = False, []
        for dataset, ids in forgotten.groupby("dataset")["sample_id"]:
            md5 = relpaths.get(f"{dataset}/{RECORDS_FILE}")
            if md5 is None:
                continue
            raw = next((data for store in stores if (data := store.read(md5)) is not None), None)
            if raw is None:
                unknown.append(f"{dataset}/{RECORDS_FILE}")
                continue
            present = pd.read_csv(BytesIO(raw), usecols=["sample_id"])["sample_id"]
            holds = holds or bool(present.isin(ids).any())
        if holds:
            doomed.append(version)
        elif unknown:
            undecided.append(f"version {version}: {unknown} not readable in any store, so whether it holds "
                             "forgotten records is unknown; kept")
        else:
            kept.append(version)
    return doomed, kept, undecided


def entry_md5s(entries: list[dict]) -> list[str]:
    return [e["md5"] for e in entries if isinstance(e, dict) and "md5" in e]


def finish_plan(repo_root: Path) -> tuple[RemovedObject, ...]:
    """Carry out the saved purge plan, if any (idempotent: objects already gone are skipped)."""
    path = repo_root / PURGE_PLAN
    if not path.is_file():
        return ()
    removed = []
    for obj in (RemovedObject(**o) for o in json.loads(path.read_text())):
        try:
            os.remove(obj.path)
            removed.append(obj)
        except FileNotFoundError:
            pass
    path.unlink()
    return tuple(removed)


def git_history_note(repo_root: Path, removed: list[str]) -> list[str]:
    """Commits whose data.dvc names a removed version: checking them out can no longer restore data/."""
    if not removed or not (repo_root / ".git").exists():
        return []
    commits = subprocess.run(["git", "log", "--format=%h", "--", DVC_FILE], cwd=repo_root, capture_output=True,
                             text=True).stdout.split()
    named = {}
    for commit in commits:
        shown = subprocess.run(["git", "show", f"{commit}:{DVC_FILE}"], cwd=repo_root, capture_output=True, text=True)
        md5 = (yaml.safe_load(shown.stdout) or {}).get("outs", [{}])[0].get("md5") if shown.returncode == 0 else None
        if md5 in removed:
            named.setdefault(md5, []).append(commit)
    return [f"git history still names version {v} in {DVC_FILE} at commits {', '.join(c)}: checking those out cannot "
            "restore data/ any more (by design)" for v, c in named.items()]
