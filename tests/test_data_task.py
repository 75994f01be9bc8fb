"""The data task against real git+DVC repositories: restore what is absent, refuse what differs, lose nothing."""

from __future__ import annotations

import shutil

import pytest
from dvc_repo import clean, make_repo

from iau_core.sources import read_canonical
from stores.data import DataVersionMismatch, ensure_data, forget_records, recorded_version


@pytest.fixture
def repo(tmp_path, monkeypatch):
    return make_repo(tmp_path, monkeypatch)


def test_fresh_clone_rebuilds_data_that_matches_data_dvc(repo):
    """No data/, no cache, empty remote: the raw sources rebuild it, byte for byte the committed version."""
    expected, data_dir = recorded_version(repo)
    shutil.rmtree(data_dir)
    shutil.rmtree(repo / ".dvc" / "cache")
    assert ensure_data(repo) == expected
    assert (data_dir / "digits" / "records.csv").is_file()
    assert clean(repo)
    assert not list(repo.glob(".data-staging-*"))


def test_absent_data_comes_back_from_cache_or_remote(repo):
    expected, data_dir = recorded_version(repo)
    ensure_data(repo)  # pushes to the remote
    shutil.rmtree(data_dir)
    assert ensure_data(repo) == expected  # from the cache
    shutil.rmtree(data_dir)
    shutil.rmtree(repo / ".dvc" / "cache")
    assert ensure_data(repo) == expected  # from the remote
    assert clean(repo)


@pytest.mark.parametrize("with_cache", [True, False])
def test_modified_data_is_refused_and_nothing_changes(repo, with_cache):
    data_dir = recorded_version(repo)[1]
    records = data_dir / "digits" / "records.csv"
    records.write_text(records.read_text().replace("0,0,train", "0,9,train", 1))
    edited, recorded = records.read_bytes(), (repo / "data.dvc").read_bytes()
    if not with_cache:
        shutil.rmtree(repo / ".dvc" / "cache")
    with pytest.raises(DataVersionMismatch, match="does not match data.dvc .* modified"):
        ensure_data(repo)
    assert records.read_bytes() == edited
    assert (repo / "data.dvc").read_bytes() == recorded


def test_missing_data_dvc_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.dvc is missing"):
        ensure_data(tmp_path)


def test_a_rebuild_from_raw_leaves_out_forgotten_records(repo):
    """After a deletion, a fresh clone (no data/, no cache, empty remote) rebuilds exactly the new version."""
    forgotten = [0, 17, 1796]
    version = forget_records(repo, "digits", forgotten, "batch 1")
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "dvc-storage")
    assert ensure_data(repo) == version
    records = read_canonical(repo / "data", "digits")[1]
    assert set(forgotten).isdisjoint(records["sample_id"]) and len(records) == 1797 - 3
    assert clean(repo)
