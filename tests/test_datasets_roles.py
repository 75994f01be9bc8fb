"""The roles (train, val, test, shadow pool) a table's records get: the same records and roles whatever the rows'
order, a new row changing the roles fingerprint; roles given as shares never moving an old record when rows are
appended or reordered; shares that cannot work, or that draw too few records, refused naming the role."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iau_core.config import DataParams, dataset_params
from iau_core.data import load_bundle
from iau_core.sources import materialize
from tests.dataset_helpers import patients


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
