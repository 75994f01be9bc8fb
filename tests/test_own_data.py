"""A team's own table through the whole deletion lifecycle (issue 16): scikit-learn's breast_cancer (569 rows, 30
features from 0.001 to 4,000) written as Parquet with its own id column `patient_id` and the rows shuffled, taken
through "Bring your own data" as a user runs it: materialize, `dvc add`, `iau train`, `iau requests add`,
`iau nightly`, a refused batch, and a rebuild from the raw file that must not bring the records back."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from iau_core.config import deep_merge
from tests import nightly_helpers
from tests.nightly_helpers import BIN, PYTHON, REPO, champion_of, ledger_of, run, trained_champion

TABLE = {"kind": "table", "name": "patients", "path": "raw/patients.parquet", "sample_id_column": "patient_id",
         "label_column": "diagnosis"}
SMALL = {
    "device": "cpu",
    # Shares, as "Bring your own data" says: roles from each id's keyed hash (193/122/113/141 records here)
    "data": {"dataset": TABLE, "train_size": 0.35, "val_size": 0.2, "test_size": 0.2, "shadow_pool_size": 0.25},
    "model": {"name": "mlp", "hidden": [64, 32]},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 8, "patience": 3, "augment": None},
    "mia": {"num_shadow": 2, "epochs": 10},
    "lira": {"num_reference": 3},
    "tracking": {"experiment": "own-data-test", "registered_model": "own-data-base",
                 "deployed_model": "own-data-deployed"},
    "nightly": {"drift": {"max_iau_batches": 50, "max_forgotten_share": 0.5}, "gate": {"max_val_acc_drop": 15.0}},
}
pytestmark = pytest.mark.slow


def breast_cancer_table(path: Path) -> pd.DataFrame:
    """The table as a team has it: its own ids (not row numbers), rows in no particular order."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    table = pd.DataFrame(bunch.data, columns=[f"f{i}" for i in range(bunch.data.shape[1])])
    table.insert(0, "patient_id", np.arange(len(table)) * 7 + 90_000)
    table["diagnosis"] = bunch.target
    table = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)
    return table


def iau(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`iau` as a user runs it, in the project folder."""
    return nightly_helpers.iau(project, *args, check=check, cwd=project)


def materialize_command(project: Path) -> subprocess.CompletedProcess:
    """The README's step 3, as a user types it, in the project folder."""
    return run(PYTHON, "-m", "iau_core.datasets", "--params", "params.yaml", cwd=project, check=False)


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """README's "Bring your own data" on the shuffled table, then `iau train`."""
    root = tmp_path_factory.mktemp("own-data") / "project"
    root.mkdir()
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(deep_merge(base, SMALL)))
    breast_cancer_table(root / "raw" / "patients.parquet")
    dvc = str(BIN / "dvc")
    run(dvc, "init", "-q", "--no-scm", cwd=root)
    run(dvc, "config", "core.analytics", "false", cwd=root)
    run(dvc, "remote", "add", "-d", "local", str(root.parent / "dvc-remote"), cwd=root)
    made = materialize_command(root)
    assert made.returncode == 0, made.stderr
    run(dvc, "add", "-q", "data", cwd=root)
    with trained_champion(root, tmp_path_factory, cwd=root) as trained:
        yield trained


def bundle_of(project: Path, **changes):
    from iau_core.config import load_params
    from iau_core.data import load_bundle

    params = load_params(project / "params.yaml", {"data": changes} if changes else None)
    return load_bundle(params.data, project / "data")


def champion(project: Path):
    return champion_of(SMALL["tracking"]["deployed_model"])


def requests_by_id(project: Path) -> dict:
    return {r.sample_id: r for r in ledger_of(project).list_requests()}


def test_a_shuffled_table_is_stored_in_id_order_and_standardized_by_the_shadow_pool(project):
    records = pd.read_csv(project / "data" / "patients" / "records.csv")
    assert records["sample_id"].is_monotonic_increasing and len(records) == 569
    bundle = bundle_of(project)
    # normalize: auto, the tables' default: the shadow pool's own statistics, so it is standardized exactly...
    shadow = bundle.shadow_pool.x.double()
    np.testing.assert_allclose(shadow.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(shadow.std(0).numpy(), 1.0, atol=1e-5)
    # ...and D only roughly (features from 0.001 to 4,000 before)
    assert float(bundle.train.x.abs().max()) < 20
    assert champion(project).tags["roles_fingerprint"] == bundle.roles_fingerprint
    # the statistics are recorded with the champion: what its inputs must be standardized by when served
    import json

    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    run_id = champion(project).run_id
    stats = json.loads(open(download_artifacts(run_id=run_id, artifact_path="normalization.json")).read())
    np.testing.assert_allclose(stats["mean"], bundle.normalization.mean)
    assert MlflowClient().get_run(run_id).data.params["data.dataset.normalize"] == "auto"


def test_the_table_forgets_survives_a_rebuild_and_keeps_every_role(project):
    before = bundle_of(project)
    roles = {r: set(getattr(before, r).ids.tolist()) for r in ("train", "val", "test", "shadow_pool")}
    ids = sorted(roles["train"])[:3]
    iau(project, "requests", "add", *map(str, ids), "--reason", "test: right to erasure")
    iau(project, "nightly")
    assert {requests_by_id(project)[i].status for i in ids} == {"done"}
    after = bundle_of(project)
    assert after.roles_fingerprint == before.roles_fingerprint  # forgetting moves nobody between roles
    assert after.normalization == before.normalization  # and needs no new statistics
    for role, members in roles.items():
        assert set(getattr(after, role).ids.tolist()) == members - set(ids), role
    folder = project / "data" / "patients"
    forgotten = folder_digest(folder)
    # a rebuild from the raw file: the forgotten records stay gone, byte for byte the forgotten version
    shutil.rmtree(folder)
    made = materialize_command(project)
    assert made.returncode == 0, made.stderr
    assert "3 forgotten" in made.stdout
    assert folder_digest(folder) == forgotten
    present = set(pd.read_csv(folder / "records.csv")["sample_id"])
    assert not present & set(ids)
    assert "modified" not in run(str(BIN / "dvc"), "status", cwd=project).stdout
    assert bundle_of(project).roles_fingerprint == champion(project).tags["roles_fingerprint"]


def test_a_batch_whose_data_has_other_roles_is_refused_before_unlearning(project):
    """Roles that differ from the champion's (here another split_seed): refused before anything irreversible,
    the requests pending with the cause, the champion unchanged."""
    parent = champion(project)
    ids = sorted(set(bundle_of(project).train.ids.tolist()) - set(requests_by_id(project)))[:2]
    iau(project, "requests", "add", *map(str, ids), "--reason", "test: right to erasure")
    result = iau(project, "nightly", "--set", "data.split_seed=1", check=False)
    assert result.returncode != 0
    assert "roles" in result.stdout + result.stderr
    rows = requests_by_id(project)
    assert {rows[i].status for i in ids} == {"pending"}
    history = iau(project, "requests", "show", str(ids[0])).stdout  # the cause, with the request
    assert "PreconditionFailed" in history and "roles" in history
    assert f"data version {parent.tags['data_version']}" in history  # the champion's data version, named
    assert champion(project).version == parent.version
    iau(project, "nightly")  # the same requests, with the roles the champion has: forgotten
    assert {requests_by_id(project)[i].status for i in ids} == {"done"}
