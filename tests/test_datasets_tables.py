"""Tables as datasets: CSV and Parquet giving the same canonical table, digits as a table, features with a
given or automatic normalization (read from the shadow pool, kept after forgetting), and every bad table refused
naming the problem, the team's tables of issue 16 in one line through `python -m iau_core.datasets`. The other
dataset kinds are in test_datasets.py, the roles the records get in test_datasets_roles.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from iau_core.config import DataParams, dataset_params
from iau_core.data import load_bundle
from iau_core.datasets.base import CanonicalDataError
from iau_core.sources import materialize
from tests.conftest import DIGITS_SIZES
from tests.dataset_helpers import build, patients

# --- CSV, Parquet, digits as a table; normalization ---------------------------------------------------------------

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


# --- A team's table as it really comes: each problem refused in one line naming the file and the column ----------

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
