"""The canonical data format: stable ids, deterministic bytes, clear errors."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import DIGITS_SIZES

import iau_core.sources
from iau_core.config import DataParams
from iau_core.data import load_bundle, roles_after_forgetting
from iau_core.sources import (
    CanonicalDataError,
    DatasetSourceMissing,
    drop_records,
    materialize,
    read_canonical,
    read_forgotten,
)


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_digits_canonical_format(digits_root):
    images, records = read_canonical(digits_root, "digits")
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    assert records["sample_id"].tolist() == list(range(1797))
    assert set(records["label"]) == set(range(10))
    assert set(records["source"]) == {"train"}


def test_materialize_is_byte_identical(tmp_path, digits_root):
    """A fresh clone rebuilds data/ and must match the md5 committed in data.dvc."""
    materialize("digits", tmp_path)
    assert digest(tmp_path / "digits") == digest(digits_root / "digits")
    assert not list((tmp_path / "digits").glob(".*tmp"))


def write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_files(tmp_path, monkeypatch):
    """Train records get ids 0..n_train-1, the official test split follows; pixels are kept as they are."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    train_x, test_x = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    write_idx(raw / "train-images-idx3-ubyte.gz", train_x, 2051)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 4]), 2049)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", test_x, 2051)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.array([9, 8, 7]), 2049)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(raw))
    materialize("fashion_mnist", tmp_path / "out")
    images, records = read_canonical(tmp_path / "out", "fashion_mnist")
    assert images.shape == (8, 1, 28, 28)
    np.testing.assert_array_equal(images[5:, 0], test_x)
    assert records["sample_id"].tolist() == list(range(8))
    assert records["label"].tolist() == [0, 1, 2, 3, 4, 9, 8, 7]
    assert records["source"].tolist() == ["train"] * 5 + ["test"] * 3


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetSourceMissing, match="apt-get install dataset-fashion-mnist"):
        materialize("fashion_mnist", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_and_broken_folder_are_named(tmp_path, digits_root):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        materialize("cifar", tmp_path)
    with pytest.raises(CanonicalDataError, match="images.npy is missing"):
        read_canonical(tmp_path, "digits")
    broken = tmp_path / "digits"
    broken.mkdir()
    (broken / "images.npy").write_bytes((digits_root / "digits" / "images.npy").read_bytes())
    (broken / "records.csv").write_text("sample_id,label,source\n0,1,train\n")
    with pytest.raises(CanonicalDataError, match="1797 rows in the array but 1 records"):
        read_canonical(tmp_path, "digits")


# --- forgetting: records leave the data, every other record keeps its role ---------------------------------------

def role_ids(bundle) -> dict[str, list[int]]:
    return {role: getattr(bundle, role).ids.tolist() for role in ("train", "val", "test", "shadow_pool")}


def digits_copy(tmp_path, digits_root):
    shutil.copytree(digits_root / "digits", tmp_path / "digits")
    return tmp_path


def test_roles_without_tombstones_are_those_from_before_forgetting_existed(digits_root):
    """Every committed data version and cached model depends on these roles: pinned from the code before
    tombstones existed (sha256 of the role ids, train|val|test|shadow, little-endian int64)."""
    bundle = load_bundle(DataParams(**DIGITS_SIZES), root=digits_root)
    digest = hashlib.sha256(b"".join(np.asarray(ids, "<i8").tobytes() for ids in role_ids(bundle).values()))
    assert digest.hexdigest() == "73d0440131c57b7913a7e58ebe12cd91b5fbf7c474338f055137100097840dc7"
    # a dataset with its own test split (Fashion-MNIST's shape) takes the other branch of assign_roles
    # (pinned with the code before records were sorted by id and roles sizes had a minimum: unchanged)
    records = pd.DataFrame({"sample_id": np.arange(1200), "label": 0, "source": ["train"] * 1000 + ["test"] * 200})
    params = DataParams(train_size=400, val_size=100, test_size=160, shadow_pool_size=300, split_seed=3)
    roles = roles_after_forgetting(records, read_forgotten(digits_root, "digits"), params)
    digest = hashlib.sha256(b"".join(np.asarray(r, "<i8").tobytes() for r in roles))
    assert digest.hexdigest() == "5c9ed9128fbd8d8b8e12c1607733d026bc4eaaa9cea2f60eb87516ea59ed94da"


def test_dropped_records_leave_and_the_rest_keep_their_roles(tmp_path, digits_root):
    root = digits_copy(tmp_path, digits_root)
    params = DataParams(**DIGITS_SIZES)
    before = load_bundle(params, root=root)
    roles = role_ids(before)
    unused = sorted(set(range(1797)) - {i for ids in roles.values() for i in ids})
    gone = set(roles["train"][:25] + roles["val"][:3] + roles["test"][:2] + roles["shadow_pool"][:4] + unused[:2])
    drop_records(root, "digits", sorted(gone))
    after = load_bundle(params, root=root)
    for role, ids in roles.items():
        assert role_ids(after)[role] == [i for i in ids if i not in gone], role
    assert len(after.train) == len(before.train) - 25
    images, records = read_canonical(root, "digits")
    assert len(images) == len(records) == 1797 - len(gone)
    assert gone.isdisjoint(records["sample_id"])
    # each remaining record still carries its own pixels and label
    keep = np.flatnonzero(~np.isin(np.arange(1797), sorted(gone)))
    old_images, old_records = read_canonical(digits_root, "digits")
    np.testing.assert_array_equal(images, old_images[keep])
    assert records["label"].tolist() == old_records["label"].to_numpy()[keep].tolist()
    tombstones = read_forgotten(root, "digits")
    assert list(tombstones.columns) == ["sample_id", "source"]  # no features, no label
    assert tombstones["sample_id"].tolist() == sorted(gone)


def test_drops_are_idempotent_and_their_order_does_not_change_the_bytes(tmp_path, digits_root):
    """One drop of A+B, or A then B then A again: the same files (so a rebuild gives the same DVC version)."""
    at_once, in_steps = digits_copy(tmp_path / "once", digits_root), digits_copy(tmp_path / "steps", digits_root)
    drop_records(at_once, "digits", [7, 3, 1500, 42])
    drop_records(in_steps, "digits", [1500, 42])
    drop_records(in_steps, "digits", [3, 7, 42])
    drop_records(in_steps, "digits", [3])
    assert digest(at_once / "digits") == digest(in_steps / "digits")
    assert read_forgotten(in_steps, "digits")["sample_id"].tolist() == [3, 7, 42, 1500]


def test_ids_that_never_existed_are_named_and_nothing_is_written(tmp_path, digits_root):
    root = digits_copy(tmp_path, digits_root)
    drop_records(root, "digits", [5])
    unchanged = digest(root / "digits")
    with pytest.raises(CanonicalDataError, match=r"\[1797, 99999\] are not records of 'digits'"):
        drop_records(root, "digits", [5, 6, 1797, 99999])
    assert digest(root / "digits") == unchanged


@pytest.mark.parametrize("crash_after_writes", [1, 2])
def test_an_interrupted_drop_is_finished_by_the_next(tmp_path, digits_root, monkeypatch, crash_after_writes):
    """Killed after the tombstones (1) or after the images (2): loading refuses, the next drop completes it."""
    clean = digits_copy(tmp_path / "clean", digits_root)
    drop_records(clean, "digits", [10, 11, 12])
    root = digits_copy(tmp_path / "crashed", digits_root)
    real_write, writes = iau_core.sources.write_atomically, []

    def write_then_die(path, write):
        if len(writes) == crash_after_writes:
            raise KeyboardInterrupt("killed")
        writes.append(path)
        real_write(path, write)

    monkeypatch.setattr(iau_core.sources, "write_atomically", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        drop_records(root, "digits", [10, 11, 12])
    monkeypatch.setattr(iau_core.sources, "write_atomically", real_write)
    with pytest.raises(CanonicalDataError, match="interrupted|images but"):
        load_bundle(DataParams(**DIGITS_SIZES), root=root)
    drop_records(root, "digits", [11])  # any later drop finishes the interrupted one
    assert digest(root / "digits") == digest(clean / "digits")


def dvc_dir_md5(folder) -> str:
    """DVC 3's md5 of a tracked folder: md5 of the sorted JSON list of {md5, relpath} of its files."""
    import json

    entries = [{"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": p.relative_to(folder).as_posix()}
               for p in sorted(folder.rglob("*")) if p.is_file()]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def test_shipped_datasets_rebuild_the_committed_data_version(tmp_path):
    """Every cached model depends on data.dvc's md5: materializing the shipped datasets with today's code must
    give exactly the committed bytes (the generalized format leaves images.npy + records.csv as they were)."""
    from pathlib import Path

    import yaml

    from iau_core.datasets.torchvision_formats import FASHION_MNIST_DIR
    from iau_core.sources import SHIPPED

    if not (Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST's Debian package is not installed (make setup installs it)")
    repo = Path(__file__).resolve().parents[1]
    committed = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    for name in SHIPPED:
        materialize(name, tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(SHIPPED)
    assert dvc_dir_md5(tmp_path / "data") == committed
