"""Each dataset kind materialized from small files written in its true on-disk format: the IDX files of MNIST,
CIFAR's python pickles, SVHN's .mat files, Purchase100's text file, an image folder, CSV and Parquet tables."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from iau_core.config import DataParams, ParamsError, dataset_params
from iau_core.data import load_bundle
from iau_core.datasets.base import CanonicalDataError, DatasetSourceMissing
from iau_core.sources import materialize, read_canonical
from tests.conftest import DIGITS_SIZES

RNG = np.random.default_rng(0)


def build(tmp_path, section: dict | str):
    """Materialize a section (paths relative to tmp_path, as params.yaml's folder) and read it back."""
    params = dataset_params(section)
    folder = materialize(params, tmp_path / "data", base_dir=tmp_path)
    return (*read_canonical(tmp_path / "data", params.name), folder)


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


# --- Tables: CSV, Parquet, digits as a table ---------------------------------------------------------------------

@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"customer": [7, 3, 11, 5], "churned": [1, 0, 1, 0], "age": [31, 45, 22, 60],
                         "spend": [10.5, 3.25, 99.0, 0.0], "split": ["train", "train", "test", "train"]})


def test_csv_and_parquet_give_the_same_canonical_table(tmp_path, frame):
    frame.to_csv(tmp_path / "churn.csv", index=False)
    frame.to_parquet(tmp_path / "churn.parquet", index=False)
    common = {"kind": "table", "sample_id_column": "customer", "label_column": "churned",
              "source_column": "split"}
    from_csv, csv_records, csv_folder = build(tmp_path, {**common, "name": "churn", "path": "churn.csv"})
    from_pq, pq_records, pq_folder = build(tmp_path, {**common, "name": "churn_pq", "path": "churn.parquet"})
    in_id_order = frame.sort_values("customer")
    np.testing.assert_array_equal(from_csv, in_id_order[["age", "spend"]].to_numpy(np.float32))
    assert csv_records["sample_id"].tolist() == [3, 5, 7, 11]
    assert csv_records["source"].tolist() == ["train", "train", "train", "test"]
    for file in ("features.npy", "records.csv"):
        assert (csv_folder / file).read_bytes() == (pq_folder / file).read_bytes()


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns="churned"), r"no column\(s\) \['churned'\]"),
    (lambda f: f.assign(age=["a", "b", "c", "d"]), r"\['age'\] are not"),
    (lambda f: f.assign(spend=[1.0, np.nan, 2.0, 3.0]), r"missing or infinite values in \['spend'\]"),
    (lambda f: f.assign(customer=[1, 1, 2, 3]), r"bad.csv: column 'customer' has 1 duplicate id\(s\), e.g. \[1\]"),
    (lambda f: f.assign(churned=[0.5, 1.0, 0.0, 1.0]), "labels .* must be integers"),
    (lambda f: f.assign(customer=[7, -10000, 11, 5]), r"'customer': sample ids must be >= 0 .* e.g. \[-10000\]"),
    (lambda f: f.assign(customer=["c7", "c3", "c11", "c5"]), r"must be integers, got text such as 'c7'; give each "
                                                              "record a stable integer id in a new column"),
    (lambda f: f.assign(customer=[7, 3, 2**63, 5]), r"sample ids must be below 2\^63"),
    (lambda f: f.assign(split=["train", "dev", "test", "train"]), r"source must be .*\['dev'\]"),
])
def test_bad_tables_are_refused_naming_the_problem(tmp_path, frame, change, message):
    change(frame).to_csv(tmp_path / "bad.csv", index=False)
    section = {"kind": "table", "path": "bad.csv", "sample_id_column": "customer", "label_column": "churned",
               "source_column": "split"}
    with pytest.raises(CanonicalDataError, match=message):
        build(tmp_path, section)


def test_digits_as_a_table_matches_digits_as_images(tmp_path):
    table, records, _ = build(tmp_path, "digits_table")
    images, image_records, _ = build(tmp_path, "digits")
    assert table.shape == (1797, 64) and table.dtype == np.float32
    pd.testing.assert_frame_equal(records, image_records)  # the same records under the same ids
    np.testing.assert_allclose(table, images.reshape(1797, 64) / 255.0, atol=0.5 / 16)


def test_a_table_loads_as_features_with_its_normalization(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"customer": rng.permutation(400) * 3, "churned": rng.integers(0, 2, 400),
                          "age": rng.normal(40, 10, 400), "spend": rng.normal(10, 2, 400)})
    frame.to_csv(tmp_path / "churn.csv", index=False)
    section = {"kind": "table", "name": "churn", "path": "churn.csv", "sample_id_column": "customer",
               "label_column": "churned", "normalize": {"mean": [40.0, 10.0], "std": [10.0, 2.0]}}
    materialize(dataset_params(section), tmp_path / "data", tmp_path)
    params = DataParams.model_validate({"dataset": section, "train_size": 100, "val_size": 100, "test_size": 100,
                                        "shadow_pool_size": 100})
    bundle = load_bundle(params, root=tmp_path / "data")
    assert bundle.input_shape == (2,)
    everything = torch.cat([bundle.train.x, bundle.val.x, bundle.test.x, bundle.shadow_pool.x])
    ids = torch.cat([bundle.train.ids, bundle.val.ids, bundle.test.ids, bundle.shadow_pool.ids])
    expected = (frame.set_index("customer").loc[ids.tolist(), ["age", "spend"]].to_numpy() - [40, 10]) / [10, 2]
    np.testing.assert_allclose(everything.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_normalization_of_the_wrong_width_is_refused(tmp_path, digits_root):
    params = DataParams.model_validate({**DIGITS_SIZES, "dataset": {"kind": "digits", "normalize": {
        "mean": [0.1, 0.2], "std": [1.0, 1.0]}}})
    with pytest.raises(ValueError, match="normalize has 2 values; this dataset needs 1 or 1"):
        load_bundle(params, root=digits_root)


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


# --- A team's table as it really comes: each problem refused in one line naming the file and the column ----------

def patients(rows: int = 420, labels=(0, 1)) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"patient_id": rng.permutation(rows) * 5 + 1000, "diagnosis": rng.choice(labels, rows),
                         "size": rng.normal(800, 300, rows), "smooth": rng.normal(0.1, 0.01, rows)})


def write_bad(path, kind: str) -> dict:
    """The bad table `kind` at path; returns the data section's changes it needs (sizes)."""
    if kind == "labels 1 and 2":
        patients(labels=(1, 2)).to_parquet(path, index=False)
    elif kind in ("10 rows", "10 rows, roles 4/2/2/2"):
        patients(10).to_parquet(path, index=False)
        if kind.endswith("4/2/2/2"):
            return {"train_size": 4, "val_size": 2, "test_size": 2, "shadow_pool_size": 2}
    elif kind == "0 bytes":
        path.write_bytes(b"")
    elif kind == "header only":
        patients().head(0).to_parquet(path, index=False)
    elif kind == "duplicate ids":
        patients().assign(patient_id=lambda f: f["patient_id"].where(f.index != 5, f["patient_id"][0])) \
            .to_parquet(path, index=False)
    elif kind == "a budget under one record":
        patients().to_parquet(path, index=False)
        return {"val_drop_budget": 0.5}
    return {}


BAD_TABLES = {
    "labels 1 and 2": (2, r"patients.parquet: column 'diagnosis' has labels \[1, 2\]; labels must be 0..K-1"),
    "10 rows": (2, r"'patients': 10 records, fewer than the 400 its roles need"),
    "10 rows, roles 4/2/2/2": (2, r"train_size is 4, val_size is 2, test_size is 2, shadow_pool_size is 2: every "
                                  "role needs at least 100 records"),
    "0 bytes": (2, r"patients.parquet: the file is empty \(0 bytes\)"),
    "header only": (2, r"patients.parquet: no rows \(columns \['patient_id', 'diagnosis', 'size', 'smooth'\]"),
    "duplicate ids": (2, r"patients.parquet: column 'patient_id' has 1 duplicate id\(s\), e.g. \[\d+\]"),
    "a budget under one record": (2, r"val_drop_budget 0.5 points of data.val_size 100 is less than one"),
}


@pytest.mark.parametrize("kind", list(BAD_TABLES))
def test_each_bad_table_is_refused_in_one_line(tmp_path, capsys, kind):
    """The tables issue 16 found accepted (or refused with a traceback), through `python -m iau_core.datasets`."""
    from iau_core.datasets.__main__ import main

    changes = write_bad(tmp_path / "patients.parquet", kind)
    budget = changes.pop("val_drop_budget", None)
    sizes = {"train_size": 120, "val_size": 100, "test_size": 100, "shadow_pool_size": 100, **changes}
    params = {"data": {"dataset": {"kind": "table", "name": "patients", "path": "patients.parquet",
                                   "sample_id_column": "patient_id", "label_column": "diagnosis"}, **sizes},
              "model": {"name": "mlp"}}
    if budget is not None:
        params["unlearning"] = {"eta_rule": {"val_drop_budget": budget}}
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    code, message = BAD_TABLES[kind]
    assert main(["--params", str(tmp_path / "params.yaml")]) == code
    err = capsys.readouterr().err
    problems = [line for line in err.strip().splitlines() if line != "invalid params:"]  # params' own heading
    assert len(problems) == 1, err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "data" / "patients").exists()  # nothing written for a refused table


def test_records_and_roles_do_not_depend_on_row_order(tmp_path):
    """The same table shuffled twice: byte-identical canonical files and the same roles fingerprint; a new row
    changes the fingerprint (so a batch refuses a model trained with the old roles)."""
    table = patients(500)
    sizes = {"train_size": 200, "val_size": 100, "test_size": 100, "shadow_pool_size": 100}
    section = {"kind": "table", "name": "patients", "path": "patients.csv", "sample_id_column": "patient_id",
               "label_column": "diagnosis"}
    fingerprints, digests = [], []
    for seed, frame in enumerate([table, table.sample(frac=1.0, random_state=9), table.iloc[::-1]]):
        frame.to_csv(tmp_path / "patients.csv", index=False)
        root = tmp_path / f"data{seed}"
        folder = materialize(dataset_params(section), root, tmp_path)
        digests.append({f: (folder / f).read_bytes() for f in ("features.npy", "records.csv")})
        fingerprints.append(load_bundle(DataParams.model_validate({"dataset": section, **sizes}), root)
                            .roles_fingerprint)
    assert digests[0] == digests[1] == digests[2] and len(set(fingerprints)) == 1
    pd.concat([table, patients(1).assign(patient_id=7)]).to_csv(tmp_path / "patients.csv", index=False)
    materialize(dataset_params(section), tmp_path / "more", tmp_path)
    appended = load_bundle(DataParams.model_validate({"dataset": section, **sizes}), tmp_path / "more")
    assert appended.roles_fingerprint != fingerprints[0]


SHARES = {"train_size": 0.4, "val_size": 0.2, "test_size": 0.2, "shadow_pool_size": 0.2}


def roles_by_id(bundle) -> dict[int, str]:
    return {i: role for role in ("train", "val", "test", "shadow_pool") for i in getattr(bundle, role).ids.tolist()}


def test_roles_given_as_shares_never_move_a_record_when_rows_are_appended_or_reordered(tmp_path):
    """Shares give each record its role from its own id and split_seed: 300 rows appended (ids below, among and
    above the old ones) and the whole table reordered leave all 900 old records where they were; the new ones
    join every role about in proportion; split_seed alone reshuffles."""
    section = {"kind": "table", "name": "patients", "path": "patients.csv", "sample_id_column": "patient_id",
               "label_column": "diagnosis"}
    params = DataParams.model_validate({"dataset": section, **SHARES})
    old = patients(900)
    old.to_csv(tmp_path / "patients.csv", index=False)
    materialize(params.dataset, tmp_path / "before", tmp_path)
    before = roles_by_id(load_bundle(params, tmp_path / "before"))
    counts = pd.Series(before).value_counts()
    assert all(abs(counts[role] / 900 - share) < 0.05 for role, share in
               zip(("train", "val", "test", "shadow_pool"), SHARES.values(), strict=True))
    new = patients(300).assign(patient_id=np.arange(300) * 5 + 1002)  # between the old ids (1000, 1005, ...)
    new.loc[:9, "patient_id"] = np.arange(10) * 7  # and below them (ids are >= 0: the ledger takes no other)
    grown = pd.concat([old, new]).sample(frac=1.0, random_state=4)
    grown.to_csv(tmp_path / "patients.csv", index=False)
    materialize(params.dataset, tmp_path / "after", tmp_path)
    after_bundle = load_bundle(params, tmp_path / "after")
    after = roles_by_id(after_bundle)
    assert {i: after[i] for i in before} == before  # no old record moved
    joined = pd.Series({i: r for i, r in after.items() if i not in before}).value_counts()
    assert set(joined.index) == {"train", "val", "test", "shadow_pool"} and joined.sum() == 300
    assert after_bundle.roles_fingerprint != load_bundle(params, tmp_path / "before").roles_fingerprint  # D grew
    reseeded = roles_by_id(load_bundle(params.model_copy(update={"split_seed": 1}), tmp_path / "before"))
    assert sum(reseeded[i] != before[i] for i in before) > 300


@pytest.mark.parametrize("sizes, message", [
    ({"train_size": 0.4, "val_size": 0.2, "test_size": 0.2, "shadow_pool_size": 100}, "not a mix"),
    ({"train_size": 0.6, "val_size": 0.3, "test_size": 0.1, "shadow_pool_size": 0.2}, "add up to at most 1"),
    ({"train_size": 0.4, "val_size": 1.5, "test_size": 0.2, "shadow_pool_size": 0.2}, "val_size is 1.5"),
])
def test_role_shares_that_cannot_work_are_refused(sizes, message):
    with pytest.raises(ValueError, match=message):
        DataParams.model_validate({"dataset": "digits", **sizes})


def test_a_share_that_draws_too_few_records_is_refused_naming_the_role(tmp_path):
    section = {"kind": "table", "name": "patients", "path": "patients.csv", "sample_id_column": "patient_id",
               "label_column": "diagnosis"}
    patients(600).to_csv(tmp_path / "patients.csv", index=False)
    params = DataParams.model_validate({"dataset": section, **SHARES, "val_size": 0.1})
    materialize(params.dataset, tmp_path / "data", tmp_path)
    with pytest.raises(ValueError, match=r"val_size 0.1 draws \d+ records of 'patients': every role needs at "
                       "least 100"):
        load_bundle(params, tmp_path / "data")


def test_auto_normalization_comes_from_the_shadow_pool_and_survives_forgetting(tmp_path):
    from iau_core.sources import drop_records

    patients(500).to_csv(tmp_path / "patients.csv", index=False)
    section = {"kind": "table", "name": "patients", "path": "patients.csv", "sample_id_column": "patient_id",
               "label_column": "diagnosis"}
    params = DataParams.model_validate({"dataset": section, "train_size": 200, "val_size": 100, "test_size": 100,
                                        "shadow_pool_size": 100})
    assert params.dataset.normalize == "auto"  # the tables' default
    materialize(params.dataset, tmp_path / "data", tmp_path)
    before = load_bundle(params, tmp_path / "data")
    shadow = before.shadow_pool.x.double()
    np.testing.assert_allclose(shadow.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(shadow.std(0).numpy(), 1.0, atol=1e-5)
    assert abs(before.normalization.mean[0] - 800) < 100  # the raw feature's scale, read from the shadow pool
    drop_records(tmp_path / "data", "patients", before.train.ids[:20].tolist())
    after = load_bundle(params, tmp_path / "data")
    assert after.normalization == before.normalization and after.roles_fingerprint == before.roles_fingerprint
    torch.testing.assert_close(after.train.x, before.train.x[20:])


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
