"""What the end-to-end tests of the deletion lifecycle share (not a test module): commands run as an operator runs
them (the installed `iau`, in a project named by IAU_PROJECT_DIR), a project's champion trained under a Prefect
server of its own with the project's MLflow store for this process and every command it starts, and what a batch
left behind (the ledger, the champion, the audit, the records forgotten). Used by test_nightly.py,
test_train_prefect_server.py, test_sisa_nightly.py and test_own_data.py."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent

# The nightly tests' project: params.yaml overrides over the checkout's shipped params.yaml (sandbox/projects.py)
SMALL = {
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 500, "val_size": 200, "test_size": 300, "shadow_pool_size": 600},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 6, "patience": 3},
    "mia": {"num_shadow": 2, "epochs": 10},
    "lira": {"num_reference": 3},
    "tracking": {"experiment": "nightly-test", "registered_model": "nightly-test-base",
                 "deployed_model": "nightly-test-deployed"},
    # Test-scale models (6 epochs on 500 records) differ by several validation points between two trainings, so
    # the utility limit is wide here; the gate's own tests (both checks, NaN) are in test_deletion.py.
    "nightly": {"drift": {"max_iau_batches": 50, "max_forgotten_share": 0.5}, "gate": {"max_val_acc_drop": 15.0}},
}


def run(*args: str, cwd: Path = REPO, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def iau(project: Path, *args: str, env: dict | None = None, check: bool = True,
        cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The installed `iau` command (make setup puts it in the venv), as an operator runs it."""
    return run(str(BIN / "iau"), *args, cwd=cwd, env={"IAU_PROJECT_DIR": str(project), **(env or {})}, check=check)


@contextmanager
def trained_champion(root: Path, tmp_path_factory: pytest.TempPathFactory, *train_args: str,
                     cwd: Path = REPO) -> Iterator[Path]:
    """The project at `root` with its champion trained by `iau train` (a Prefect flow, against a real Prefect
    server on loopback, sandbox/servers.py); until the block ends this process and every command it starts use
    that server and the project's MLflow store (SQLite in the folder)."""
    import mlflow

    from sandbox.servers import prefect_server

    store = f"sqlite:///{root / 'mlflow.db'}"
    before = mlflow.get_tracking_uri()
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as server, pytest.MonkeyPatch.context() as env:
        for key, value in {**server, "MLFLOW_TRACKING_URI": store}.items():
            env.setenv(key, value)
        mlflow.set_tracking_uri(store)  # an earlier test's set_tracking_uri would win over the variable
        try:
            iau(root, "train", *train_args, cwd=cwd)
            yield root
        finally:
            mlflow.set_tracking_uri(before)


def ledger_of(project: Path):
    from ledger import Ledger, ledger_url

    return Ledger(ledger_url(project))


def training_ids(project: Path) -> np.ndarray:
    """The ids of D (the training role) in the project's current data."""
    from iau_core.config import load_params
    from iau_core.data import load_bundle

    params = load_params(project / "params.yaml")
    return load_bundle(params.data, project / "data").train.ids.numpy()


def champion_of(deployed_model: str):
    """The registered version the champion alias names."""
    from mlflow import MlflowClient

    return MlflowClient().get_model_version_by_alias(deployed_model, "champion")


def pick(project: Path, count: int) -> list[int]:
    """`count` training records nobody has asked about yet."""
    asked = {r.sample_id for r in ledger_of(project).list_requests()}
    return [int(i) for i in training_ids(project) if int(i) not in asked][:count]


def statuses(project: Path, ids: list[int]) -> set[str]:
    by_id = {r.sample_id: r.status for r in ledger_of(project).list_requests()}
    return {by_id[i] for i in ids}


def assert_forgotten_once(project: Path, ids: list[int]) -> None:
    """The records are gone from D and from data/, listed once in forgotten.csv, and done in the ledger."""
    assert statuses(project, ids) == {"done"}
    assert not set(ids) & set(training_ids(project).tolist())
    records = (project / "data" / "digits" / "records.csv").read_text().splitlines()
    present = {int(line.split(",")[0]) for line in records[1:]}
    assert not set(ids) & present
    with open(project / "forgotten.csv") as handle:
        listed = [int(row["sample_id"]) for row in csv.DictReader(handle)]
    assert all(listed.count(i) == 1 for i in ids)


def add_requests(project: Path, ids: list[int], tier: str = "normal",
                 reason: str = "test: right to erasure") -> None:
    iau(project, "requests", "add", *map(str, ids), "--reason", reason, "--tier", tier)


def audit_of(run_id: str, batch_id: int | str) -> dict:
    """The batch's audit (JSON) from its MLflow run."""
    from mlflow import MlflowClient

    return json.loads(Path(MlflowClient().download_artifacts(run_id, f"audit/batch-{batch_id}.json")).read_text())


def kill_after(project: Path, step: str) -> subprocess.CompletedProcess:
    """One batch, SIGKILLed right after `step` (tests/nightly_kill.py)."""
    killed = run(PYTHON, str(REPO / "tests" / "nightly_kill.py"), step, env={"IAU_PROJECT_DIR": str(project)},
                 check=False)
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, killed.stdout, killed.stderr)
    return killed
