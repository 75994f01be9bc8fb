"""A team's setup end to end: a real `mlflow server` on loopback with a PostgreSQL backend store and the artifacts
served by the server (--serve-artifacts); `iau train` (a subprocess, as an operator runs it) and the unlearn flow
write to it through MLFLOW_TRACKING_URI alone. Runs, registered models and artifacts end up on the server: the
artifacts in the server's artifact root, nothing in the project folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = {
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 400, "val_size": 150, "test_size": 200, "shadow_pool_size": 400},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 3, "patience": 2},
    "unlearning": {"methods": ["iau"]},
    "mia": {"num_shadow": 2, "epochs": 5},
    "lira": {"num_reference": 2},
    "tracking": {"experiment": "team", "registered_model": "team-base", "deployed_model": "team-deployed"},
}
IAU = str(Path(sys.executable).parent / "iau")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL (the MLflow backend store and the ledger), an MLflow server over it, a project; then `iau
    train` and the unlearn flow against the server. Yields what the tests look at, by name."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from sandbox.postgres import Unavailable, create_database, running_postgres
    from sandbox.projects import make_project
    from sandbox.servers import mlflow_server

    home = tmp_path_factory.mktemp("mlflow-server")
    project = make_project(tmp_path_factory.mktemp("team") / "project", SMALL)
    try:
        postgres = running_postgres()
        server_url = postgres.__enter__()
    except Unavailable as exc:
        pytest.skip(str(exc))
    import mlflow

    before = mlflow.get_tracking_uri()
    try:
        backend = create_database(server_url, "mlflow")
        ledger = create_database(server_url, "iau_ledger")
        with mlflow_server(home, backend) as uri, pytest.MonkeyPatch.context() as env:
            for key, value in {"MLFLOW_TRACKING_URI": uri, "IAU_PROJECT_DIR": str(project), "IAU_LEDGER_URL": ledger,
                               "IAU_THREADS": "1"}.items():
                env.setenv(key, value)
            env.delenv("IAU_EXECUTION", raising=False)
            mlflow.set_tracking_uri(uri)  # an earlier test's set_tracking_uri would win over the variable
            with prefect_test_harness(server_startup_timeout=None):
                trained = subprocess.run([IAU, "train"], capture_output=True, text=True, timeout=600,
                                         env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()})
                assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
                from flows.unlearn import unlearn

                result = unlearn(selection="random")
            yield {"uri": uri, "home": home, "project": project, "result": result, "trained": trained.stdout,
                   "backend": backend}
    finally:
        mlflow.set_tracking_uri(before)
        postgres.__exit__(None, None, None)


def test_runs_models_and_artifacts_are_on_the_server(team):
    from mlflow import MlflowClient

    uri, home, project, result, trained = (team[k] for k in ("uri", "home", "project", "result", "trained"))
    client = MlflowClient(tracking_uri=uri)
    assert client._tracking_client.store.__class__.__name__ == "RestStore"  # through the server's REST API
    assert "champion: models:/team-deployed/1" in trained
    experiment = client.get_experiment(result["experiment_id"])
    assert experiment.name == "team" and experiment.artifact_location.startswith("mlflow-artifacts:")

    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.info.artifact_uri.startswith("mlflow-artifacts:")
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {r.data.tags["method"] for r in children} == {"original", "retrain", "retrain_alt", "iau"}
    assert all("mu_gap" in r.data.metrics for r in children)
    kinds = {r.data.tags.get("kind") for r in client.search_runs([experiment.experiment_id])}
    assert {"base", "reference-attack", "champion-training"} <= kinds

    assert client.get_model_version_by_alias("team-deployed", "champion").version == "1"
    assert client.search_model_versions("name = 'team-base'"), "the unlearn flow's base model is not registered"

    # The comparison reads back through the server, and its bytes are in the server's artifact root.
    local = client.download_artifacts(parent.info.run_id, "comparison.csv", str(home / "download"))
    assert "iau" in Path(local).read_text()
    stored = list((home / "artifacts").rglob(f"{parent.info.run_id}/artifacts/comparison.csv"))
    assert stored and stored[0].read_bytes() == Path(local).read_bytes()
    for child in children:  # every method's weights, served
        assert list((home / "artifacts").rglob(f"{child.info.run_id}/artifacts/state_dict.pt"))
    # Nothing went to the project's embedded stores.
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()


def test_the_backend_store_is_postgresql(team):
    """The server keeps its runs in PostgreSQL: the database holds the parent run (read with SQL, not MLflow)."""
    import psycopg

    conninfo = team["backend"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection:
        row = connection.execute("SELECT status FROM runs WHERE run_uuid = %s",
                                 (team["result"]["parent_run_id"],)).fetchone()
    assert row == ("FINISHED",)
