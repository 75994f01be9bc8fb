"""The data forgets too: deletions make a new DVC version, keep every other record's role, and purge the old ones.

Real git + DVC repositories in tmp_path (tests/dvc_repo.py) holding the real digits data; no mocks of DVC.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from conftest import DIGITS_SIZES
from dvc_repo import GIT_USER, clean, dvc, make_repo, sh

import stores.data
import stores.purge
from iau_core.config import DataParams
from iau_core.data import load_bundle
from iau_core.sources import read_canonical, read_forgotten
from stores.data import DataVersionMismatch, ensure_data, forget_records, read_forgotten_list, recorded_version
from stores.purge import PURGE_PLAN, purge

PARAMS = DataParams(**DIGITS_SIZES)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """The committed version v0 is in the cache, on the remote and in git."""
    root = make_repo(tmp_path, monkeypatch)
    ensure_data(root)
    commit(root, "data v0")
    return root


def commit(root: Path, message: str) -> None:
    tracked = [f for f in ("data.dvc", ".gitignore", ".dvc", ".dvcignore", "forgotten.csv") if (root / f).exists()]
    sh(root, "git", "add", *tracked)
    sh(root, "git", *GIT_USER, "commit", "-qm", message)


def role_ids(root: Path) -> dict[str, list[int]]:
    bundle = load_bundle(PARAMS, root / "data")
    return {role: getattr(bundle, role).ids.tolist() for role in ("train", "val", "test", "shadow_pool")}


def store_roots(root: Path) -> dict[str, Path]:
    return {"cache": root / ".dvc/cache/files/md5", "remote": root / "dvc-storage/files/md5"}


def object_path(store: Path, md5: str) -> Path:
    return store / md5[:2] / md5[2:]


def objects_of(root: Path, version: str) -> set[str]:
    """The file objects a version's manifest names (read before any purge, from the cache)."""
    return {e["md5"] for e in json.loads(object_path(store_roots(root)["cache"], version).read_text())}


def test_forgetting_writes_a_new_version_without_the_records(repo):
    v0 = recorded_version(repo)[0]
    before = role_ids(repo)
    gone = before["train"][:20] + before["val"][:5] + before["shadow_pool"][:2]
    v1 = forget_records(repo, "digits", gone, "batch 7")
    assert v1 != v0 and recorded_version(repo)[0] == v1
    assert object_path(store_roots(repo)["remote"], v1).is_file() and clean(repo)
    after = role_ids(repo)
    for role, ids in before.items():
        assert after[role] == [i for i in ids if i not in gone], f"{role} changed beyond the deleted records"
    assert len(after["train"]) == len(before["train"]) - 20
    assert set(gone).isdisjoint(read_canonical(repo / "data", "digits")[1]["sample_id"])
    listed = read_forgotten_list(repo)
    assert sorted(listed["sample_id"]) == sorted(gone)
    assert set(listed["dataset"]) == {"digits"} and set(listed["note"]) == {"batch 7"}
    assert all(datetime.fromisoformat(t).tzinfo for t in listed["forgotten_at"])

    files = ("data.dvc", "forgotten.csv", "data/digits/forgotten.csv", "data/digits/records.csv")
    snapshot = {f: (repo / f).read_bytes() for f in files}
    assert forget_records(repo, "digits", gone, "batch 7") == v1  # a second call is a no-op
    assert {f: (repo / f).read_bytes() for f in files} == snapshot


@pytest.mark.parametrize("crash", ["after listing", "after dropping", "after dvc add"])
def test_a_crash_at_any_point_is_finished_by_calling_again(repo, monkeypatch, crash):
    gone = role_ids(repo)["train"][:10]
    real_drop, real_push = stores.data.drop_records, stores.data.push_to_default_remote

    def killed(*args):
        raise KeyboardInterrupt("SIGKILL")

    def drop_then_killed(*args):
        real_drop(*args)
        killed()

    if crash == "after listing":
        monkeypatch.setattr(stores.data, "drop_records", killed)
    elif crash == "after dropping":
        monkeypatch.setattr(stores.data, "drop_records", drop_then_killed)
    else:
        monkeypatch.setattr(stores.data, "push_to_default_remote", killed)
    with pytest.raises(KeyboardInterrupt):
        forget_records(repo, "digits", gone, "batch 8")
    monkeypatch.setattr(stores.data, "drop_records", real_drop)
    monkeypatch.setattr(stores.data, "push_to_default_remote", real_push)
    if crash == "after dropping":  # data/ is ahead of data.dvc: only the retry may go on from here
        with pytest.raises(DataVersionMismatch):
            ensure_data(repo)

    version = forget_records(repo, "digits", gone, "batch 8")
    assert recorded_version(repo)[0] == version and clean(repo)
    assert sorted(read_forgotten_list(repo)["sample_id"]) == sorted(gone)  # listed once
    assert read_forgotten(repo / "data", "digits")["sample_id"].tolist() == sorted(gone)
    shutil.rmtree(repo / "data")  # the finished version is the one a rebuild from raw gives
    shutil.rmtree(repo / ".dvc/cache")
    shutil.rmtree(repo / "dvc-storage")
    assert ensure_data(repo) == version


def test_unknown_ids_or_dataset_are_named_and_nothing_is_written(repo):
    recorded = (repo / "data.dvc").read_bytes()
    with pytest.raises(ValueError, match=r"sample ids \[1797, 4000\] are not records of 'digits'"):
        forget_records(repo, "digits", [5, 1797, 4000], "batch 9")
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar10'.*holds no canonical dataset"):
        forget_records(repo, "cifar10", [5], "batch 9")
    assert (repo / "data.dvc").read_bytes() == recorded
    assert not (repo / "forgotten.csv").exists() and not (repo / "data/digits/forgotten.csv").exists()


def test_a_new_deletion_refuses_data_that_differs_from_data_dvc(repo):
    records = repo / "data/digits/records.csv"
    records.write_text(records.read_text().replace("0,0,train", "0,9,train", 1))
    with pytest.raises(DataVersionMismatch):
        forget_records(repo, "digits", [5], "batch 10")
    assert not (repo / "forgotten.csv").exists()


def test_purge_removes_old_versions_that_hold_forgotten_records_and_nothing_else(repo):
    v0 = recorded_version(repo)[0]
    v1 = forget_records(repo, "digits", [1, 2, 3], "batch 1")
    v2 = forget_records(repo, "digits", [4, 5], "batch 2")
    commit(repo, "data v2")
    # an older version that holds no forgotten record: v2 plus a file, then back to v2
    (repo / "data/notes.txt").write_text("reviewed\n")
    dvc(repo, "add", "-q", "data")
    dvc(repo, "push", "-q")
    kept = recorded_version(repo)[0]
    (repo / "data/notes.txt").unlink()
    dvc(repo, "add", "-q", "data")
    assert recorded_version(repo)[0] == v2

    survivors = objects_of(repo, v2) | objects_of(repo, kept) | {v2, kept}
    doomed = (objects_of(repo, v0) | objects_of(repo, v1) | {v0, v1}) - survivors
    expected = {object_path(store, md5): object_path(store, md5).stat().st_size
                for store in store_roots(repo).values() for md5 in doomed}
    # v0: records, images, manifest; v1: the same and its tombstones; each in the cache and on the remote
    assert len(expected) == 2 * 7

    report = purge(repo)
    assert sorted(report.removed_versions) == sorted([v0, v1])
    assert report.kept_versions == (kept,)
    assert {Path(o.path): o.size for o in report.removed_objects} == expected
    assert report.bytes_removed == sum(expected.values())
    assert not any(path.exists() for path in expected)
    assert all(object_path(store, md5).is_file() for store in store_roots(repo).values() for md5 in survivors)
    history = [line for line in report.not_removed if "git history" in line]
    assert len(history) == 1 and v0 in history[0] and v1 not in history[0]  # only v0 and v2 were committed
    assert f"`{v0}`" in report.to_markdown() and json.loads(json.dumps(report.to_dict()))

    shutil.rmtree(repo / "data")  # the current version comes back from the cache, then from the remote
    dvc(repo, "checkout", "-q")
    assert clean(repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc/cache")
    dvc(repo, "pull", "-q")
    assert clean(repo) and recorded_version(repo)[0] == v2

    again = purge(repo)
    assert again.removed_versions == () and again.removed_objects == () and again.bytes_removed == 0


def test_an_interrupted_purge_is_finished_by_the_next(repo, monkeypatch):
    v0 = recorded_version(repo)[0]
    forget_records(repo, "digits", [7], "batch 1")
    real_finish, calls = stores.purge.finish_plan, []

    def killed_once_planned(root):
        calls.append(root)
        if len(calls) == 2:  # the first call finishes an older plan; the second would carry out this one
            raise KeyboardInterrupt("SIGKILL")
        return real_finish(root)

    monkeypatch.setattr(stores.purge, "finish_plan", killed_once_planned)
    with pytest.raises(KeyboardInterrupt):
        purge(repo)
    monkeypatch.setattr(stores.purge, "finish_plan", real_finish)
    plan = json.loads((repo / PURGE_PLAN).read_text())
    Path(plan[0]["path"]).unlink()  # killed part-way through the removals
    report = purge(repo)
    assert len(report.removed_objects) == len(plan) - 1
    assert not any(Path(o["path"]).exists() for o in plan)
    assert not (repo / PURGE_PLAN).exists()
    assert not any(object_path(store, v0).exists() for store in store_roots(repo).values())


def test_purge_says_what_it_could_not_remove_and_names_no_secret(repo):
    v0 = recorded_version(repo)[0]
    v0_records = json.loads(object_path(store_roots(repo)["cache"], v0).read_text())
    records_md5 = next(e["md5"] for e in v0_records if e["relpath"] == "digits/records.csv")
    forget_records(repo, "digits", [7], "batch 1")
    # v0 lives on in the remote only, and its records.csv is gone from every store: undecidable
    object_path(store_roots(repo)["cache"], v0).unlink()
    for store in store_roots(repo).values():
        object_path(store, records_md5).unlink()
    report = purge(repo)
    assert report.removed_versions == ()
    assert any(v0 in line and "digits/records.csv" in line for line in report.not_removed)
    assert object_path(store_roots(repo)["remote"], v0).is_file()

    dvc(repo, "remote", "add", "-d", "web", "https://operator:s3cr3t-token@example.com/store")
    report = purge(repo)
    told = report.to_markdown() + json.dumps(report.to_dict())
    assert "'web' is not a local folder" in told and "['local'] are not the default" in told
    assert "s3cr3t" not in told and "operator" not in told


def test_the_preconditions_of_forgetting_are_named_before_anything_changes(repo):
    """What stopped the issue's batch after registering a version, found before a batch unlearns: records not in
    id order (an older layout), ids the data does not hold, a remote that cannot take the new version."""
    from stores.data import forgetting_problems

    assert forgetting_problems(repo, "digits", [3, 5]) == []
    records = repo / "data" / "digits" / "records.csv"
    lines = records.read_text().splitlines()
    records.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")  # two rows swapped
    assert "not in sample_id order" in " ".join(forgetting_problems(repo, "digits", [3]))
    records.write_text("\n".join(lines) + "\n")
    assert "[5000]" in " ".join(forgetting_problems(repo, "digits", [3, 5000]))
    (repo / "blocker").write_text("a file where the remote's folder should be")
    dvc(repo, "remote", "modify", "local", "url", str(repo / "blocker" / "store"))
    problems = forgetting_problems(repo, "digits", [3])
    assert problems == [f"DVC remote 'local': {repo / 'blocker'} is not a writable folder"]
    assert forgetting_problems(repo, "lost", [3]) == [f"{repo / 'data' / 'lost'} holds no canonical dataset "
                                                       "(data.dataset.name is 'lost')"]
