"""Each dataset kind materialized from small files written in its true on-disk format: the IDX files of MNIST,
CIFAR's python pickles, SVHN's .mat files, Purchase100's text file and an image folder (ids from paths or a
manifest, and rebuilt with its forgotten ids left out); missing files, unknown kinds and keys named; and the
`python -m iau_core.datasets` command. Tables (CSV, Parquet) are in test_datasets_tables.py, the roles the
records get in test_datasets_roles.py."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pandas as pd
import pytest

from iau_core.config import ParamsError, dataset_params
from iau_core.datasets.base import CanonicalDataError, DatasetSourceMissing
from iau_core.sources import materialize
from tests.dataset_helpers import build

RNG = np.random.default_rng(0)


# --- MNIST: IDX files, as torchvision leaves them (<root>/MNIST/raw/, not gzipped) ------------------------------

def write_idx(path, array: np.ndarray, magic: int, zipped: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with (gzip.open if zipped else open)(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_mnist_from_torchvision_layout(tmp_path):
    raw = tmp_path / "raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_x, test_x = RNG.integers(0, 256, (4, 28, 28)), RNG.integers(0, 256, (2, 28, 28))
    write_idx(raw / "train-images-idx3-ubyte", train_x, 2051, zipped=False)
    write_idx(raw / "train-labels-idx1-ubyte", np.array([3, 1, 4, 1]), 2049, zipped=False)
    write_idx(raw / "t10k-images-idx3-ubyte", test_x, 2051, zipped=False)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([5, 9]), 2049, zipped=False)
    images, records, _ = build(tmp_path, "mnist")
    assert images.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(images[:4, 0], train_x)
    np.testing.assert_array_equal(images[4:, 0], test_x)
    assert records["label"].tolist() == [3, 1, 4, 1, 5, 9]
    assert records["source"].tolist() == ["train"] * 4 + ["test"] * 2


def test_missing_files_name_the_download_switch(tmp_path):
    for kind in ("mnist", "cifar10", "svhn", "purchase100"):
        with pytest.raises(DatasetSourceMissing, match="download: true"):
            materialize(kind, tmp_path / "data", base_dir=tmp_path)
    assert not (tmp_path / "data").exists()


# --- CIFAR-10 / CIFAR-100: python pickles ------------------------------------------------------------------------

def write_cifar_batch(path, images: np.ndarray, labels: dict[str, list[int]]) -> None:
    """As the published batches: a dict with 'data' (N, 3072) uint8 (R, G, B planes) and label lists."""
    batch = {"batch_label": "test fixture", "data": images.reshape(len(images), -1),
             "filenames": [f"img_{i}.png" for i in range(len(images))], **labels}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "raw" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [RNG.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8) for _ in range(6)]
    for i, batch in enumerate(batches[:5]):
        write_cifar_batch(folder / f"data_batch_{i + 1}", batch, {"labels": [i, 9 - i]})
    write_cifar_batch(folder / "test_batch", batches[5], {"labels": [7, 7]})
    images, records, _ = build(tmp_path, "cifar10")
    assert images.shape == (12, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, np.concatenate(batches))  # channel planes land in (C, H, W)
    assert records["label"].tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5, 7, 7]
    assert records["source"].tolist() == ["train"] * 10 + ["test"] * 2
    assert records["sample_id"].tolist() == list(range(12))


@pytest.mark.parametrize(("labels", "expected"), [("fine", [42, 99, 5]), ("coarse", [3, 19, 1])])
def test_cifar100_fine_or_coarse_labels(tmp_path, labels, expected):
    folder = tmp_path / "raw" / "cifar-100-python"
    folder.mkdir(parents=True)
    images = RNG.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    write_cifar_batch(folder / "train", images[:2], {"fine_labels": [42, 99], "coarse_labels": [3, 19]})
    write_cifar_batch(folder / "test", images[2:], {"fine_labels": [5], "coarse_labels": [1]})
    _, records, _ = build(tmp_path, {"kind": "cifar100", "labels": labels})
    assert records["label"].tolist() == expected


def test_a_cifar_pickle_that_asks_for_code_is_refused(tmp_path):
    """A tampered batch must not run code on load: only numpy arrays are allowed out of the pickle."""
    folder = tmp_path / "raw" / "cifar-100-python"
    folder.mkdir(parents=True)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "train").write_bytes(pickle.dumps({"data": Exploit(), "fine_labels": []}, protocol=2))
    (folder / "test").write_bytes((folder / "train").read_bytes())
    with pytest.raises(CanonicalDataError, match=r"asks for \S*\.print"):
        materialize("cifar100", tmp_path / "data", base_dir=tmp_path)


# --- SVHN: .mat files --------------------------------------------------------------------------------------------

def write_svhn(path, images: np.ndarray, labels: list[int]) -> None:
    """As the published files: X (32, 32, 3, N) uint8, y (N, 1) with 10 standing for the digit 0."""
    from scipy.io import savemat

    savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": np.array(labels, dtype=np.uint8)[:, None]})


def test_svhn_mat_files_with_and_without_extra(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    splits = {"train": [1, 10, 3], "test": [10, 2], "extra": [4, 5, 6, 10]}
    arrays = {s: RNG.integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8) for s, y in splits.items()}
    for split, labels in splits.items():
        write_svhn(raw / f"{split}_32x32.mat", arrays[split], labels)
    images, records, _ = build(tmp_path, "svhn")
    np.testing.assert_array_equal(images, np.concatenate([arrays["train"], arrays["test"]]))
    assert records["label"].tolist() == [1, 0, 3, 0, 2]  # 10 is the digit 0
    with_extra, extra_records, _ = build(tmp_path, {"kind": "svhn", "extra": True, "name": "svhn_extra"})
    assert len(with_extra) == 9
    np.testing.assert_array_equal(with_extra[5:], arrays["extra"])
    assert extra_records["source"].tolist() == ["train"] * 3 + ["test"] * 2 + ["train"] * 4
    # switching extra on moves no train or test record's id
    pd.testing.assert_frame_equal(extra_records.iloc[:5], records)


# --- Purchase100: its own text format ----------------------------------------------------------------------------

def test_purchase100_file(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    features = RNG.integers(0, 2, (5, 600))
    labels = [1, 100, 37, 2, 1]
    lines = [",".join(map(str, [y, *row])) for y, row in zip(labels, features, strict=True)]
    (raw / "dataset_purchase").write_text("\n".join(lines) + "\n")
    table, records, folder = build(tmp_path, "purchase100")
    assert table.dtype == np.float32 and table.shape == (5, 600)
    np.testing.assert_array_equal(table, features)
    assert records["label"].tolist() == [0, 99, 36, 1, 0]
    assert (folder / "features.npy").is_file() and not (folder / "images.npy").exists()


# --- An image folder ----------------------------------------------------------------------------------------------

def write_png(path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "photos"
    for cls, n in (("cat", 3), ("dog", 2)):
        for i in range(n):
            write_png(folder / cls / f"{i}.png", RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    (folder / "README.txt").write_text("not an image, not in a class folder")
    return folder


def test_image_folder_ids_from_paths_are_stable(tmp_path, image_folder):
    section = {"kind": "image_folder", "name": "photos", "path": "photos", "image_size": 16}
    images, records, folder = build(tmp_path, section)
    assert images.shape == (5, 3, 16, 16)
    assert records["label"].tolist() == [0, 0, 0, 1, 1]  # classes are the sorted folder names
    files = pd.read_csv(folder / "files.csv")
    assert files["path"].tolist() == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png"]
    before = dict(zip(files["path"], files["sample_id"], strict=True))
    write_png(image_folder / "bird" / "0.png", RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))  # a new class
    (image_folder / "cat" / "1.png").unlink()
    _, records, folder = build(tmp_path, section)
    after = pd.read_csv(folder / "files.csv")
    after = dict(zip(after["path"], after["sample_id"], strict=True))
    assert all(after[p] == before[p] for p in after if p in before)  # no surviving file was renumbered
    assert len(after) == 5 and "cat/1.png" not in after


def test_image_folder_ids_from_a_manifest(tmp_path, image_folder):
    manifest = tmp_path / "manifest.csv"
    paths = ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png"]
    pd.DataFrame({"sample_id": [50, 10, 40, 20, 30], "path": paths,
                  "source": ["train", "train", "test", "train", "test"]}).to_csv(manifest, index=False)
    section = {"kind": "image_folder", "name": "photos", "path": "photos", "image_size": 8, "channels": 1,
               "ids": "manifest", "manifest": "manifest.csv"}
    images, records, _ = build(tmp_path, section)
    assert images.shape == (5, 1, 8, 8)
    assert records["sample_id"].tolist() == [10, 20, 30, 40, 50]  # stored in id order, whatever the manifest's
    assert records["source"].tolist() == ["train", "train", "test", "test", "train"]
    assert records["label"].tolist() == [0, 1, 1, 0, 0]  # cat/1, dog/0, dog/1, cat/2, cat/0
    write_png(image_folder / "dog" / "2.png", RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    with pytest.raises(CanonicalDataError, match=r"does not list, e.g. \['dog/2.png'\]"):
        build(tmp_path, section)
    (image_folder / "dog" / "2.png").unlink()
    (image_folder / "cat" / "0.png").unlink()
    with pytest.raises(CanonicalDataError, match=r"lists files .*\['cat/0.png'\]"):
        build(tmp_path, section)


def test_an_image_folder_rebuilt_with_its_forgotten_ids_is_the_forgotten_version(tmp_path, image_folder):
    """Rebuilds apply forgotten.csv for every kind: an image folder forgotten by a deletion and the same folder
    rebuilt from its files with the same ids left out are byte for byte one version (files.csv included: a
    file's name may say whom it shows)."""
    from iau_core.sources import drop_records

    section = dataset_params({"kind": "image_folder", "name": "photos", "path": "photos", "image_size": 8})
    deleted = materialize(section, tmp_path / "deleted", tmp_path)
    ids = pd.read_csv(deleted / "records.csv")["sample_id"].tolist()[1:3]
    drop_records(tmp_path / "deleted", "photos", ids)
    rebuilt = materialize(section, tmp_path / "rebuilt", tmp_path, forget=ids)
    files = sorted(p.name for p in deleted.iterdir())
    assert files == sorted(p.name for p in rebuilt.iterdir()) == ["files.csv", "forgotten.csv", "images.npy",
                                                                  "records.csv"]
    assert all((deleted / f).read_bytes() == (rebuilt / f).read_bytes() for f in files)
    assert not set(pd.read_csv(rebuilt / "files.csv")["sample_id"]) & set(ids)
    assert len(np.load(rebuilt / "images.npy")) == 3


# --- Kinds and keys params.yaml cannot name; the materialize command ----------------------------------------------

def test_unknown_kinds_and_keys_are_named():
    with pytest.raises(ParamsError, match="data.dataset: Input tag 'imagenet'"):
        dataset_params("imagenet")
    with pytest.raises(ParamsError, match="extra"):
        dataset_params({"kind": "cifar10", "extra": True})  # SVHN's key, not CIFAR's
    with pytest.raises(ParamsError, match="ids: manifest needs"):
        dataset_params({"kind": "image_folder", "path": "x", "ids": "manifest"})


def test_the_materialize_command(tmp_path, capsys):
    """python -m iau_core.datasets writes the dataset params.yaml names, and says what is missing otherwise."""
    from iau_core.datasets.__main__ import main

    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits_table\nmodel:\n  name: mlp\n")
    assert main(["--params", str(tmp_path / "params.yaml")]) == 0
    assert (tmp_path / "data" / "digits_table" / "features.npy").is_file()
    assert "dvc add data" in capsys.readouterr().out
    assert main(["--params", str(tmp_path / "params.yaml"), "--set", "data.dataset=cifar10",
                 "--set", "model.name=lenet5"]) == 1
    assert "download: true" in capsys.readouterr().err
    assert main(["--params", str(tmp_path / "params.yaml"), "--set", "data.dataset=imagenet"]) == 2
    assert "data.dataset" in capsys.readouterr().err
