"""Real servers end to end, as the README's "Deployments" section runs them: a Prefect server on loopback, a
process work pool, `prefect deploy --all` from prefect.yaml, a worker; then the outliers deployment and the
nightly deployment on a small project, asserting the MLflow record and the ledger. Everything started is stopped."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from sandbox.projects import BIN, REPO, make_project
from sandbox.servers import prefect_server, prefect_worker

pytestmark = pytest.mark.slow
SMALL = {
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 500, "val_size": 200, "test_size": 300, "shadow_pool_size": 600},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 5, "patience": 3},
    "mia": {"num_shadow": 2, "epochs": 10},
    "lira": {"num_reference": 2},
    "tracking": {"experiment": "deploy-test", "registered_model": "deploy-test-base",
                 "deployed_model": "deploy-test-deployed"},
    "nightly": {"timezone": "Europe/Berlin"},
}


def cli(env: dict, *args: str, timeout: float = 600) -> str:
    result = subprocess.run(args, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{output[-4000:]}"
    return result.stdout


def test_deployments_run_through_a_server_and_a_worker(tmp_path):
    from mlflow import MlflowClient

    project = make_project(tmp_path / "project", SMALL)
    stores = {"IAU_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    with prefect_server(tmp_path) as server:
        env = {**server, **stores}
        prefect = str(BIN / "prefect")
        cli(env, prefect, "work-pool", "create", "iau-local", "--type", "process")
        timezone = cli(env, str(BIN / "python"), "-c", "from iau_core.config import load_params; "
                       f"print(load_params('{project / 'params.yaml'}').nightly.timezone)").strip()
        cli({**env, "IAU_CODE_DIR": str(REPO), "IAU_NIGHTLY_TIMEZONE": timezone}, prefect, "--no-prompt", "deploy",
            "--all")
        nightly = json.loads(cli(env, str(BIN / "python"), "-c", NIGHTLY_DEPLOYMENT))
        assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}]
        assert nightly["concurrency_limit"] == 1 and nightly["parameters"] == {}

        with prefect_worker("iau-local", env, tmp_path / "worker.log", REPO):
            out = cli(env, prefect, "deployment", "run", "unlearn/outliers", "--watch")
            assert "Completed" in out, out[-2000:]
            client = MlflowClient(tracking_uri=stores["MLFLOW_TRACKING_URI"])
            experiment = client.get_experiment_by_name("deploy-test")
            parents = client.search_runs([experiment.experiment_id], "tags.flow = 'unlearn'")
            assert len(parents) == 1 and parents[0].info.status == "FINISHED"
            assert parents[0].data.tags["selection"] == "outliers"

            iau = str(BIN / "iau")
            cli(env, iau, "train")
            ids = json.loads(cli(env, str(BIN / "python"), "-c", TRAINING_IDS.format(project=project)))[:4]
            cli(env, iau, "requests", "add", *map(str, ids), "--reason", "erasure request")
            out = cli(env, prefect, "deployment", "run", "deletion-batch/nightly", "--watch")
            assert "Completed" in out, out[-2000:]
            listed = json.loads(cli(env, iau, "requests", "list", "--json"))
            assert {r["sample_id"] for r in listed if r["status"] == "done"} == set(ids)
            champion = client.get_model_version_by_alias("deploy-test-deployed", "champion")
            assert {r["model_version"] for r in listed} == {str(champion.version)}
            assert champion.tags["method"] == "iau"


NIGHTLY_DEPLOYMENT = """
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    d = client.read_deployment_by_name("deletion-batch/nightly")
    print(json.dumps({"schedules": [{"cron": s.schedule.cron, "timezone": s.schedule.timezone} for s in d.schedules],
                      "concurrency_limit": d.global_concurrency_limit.limit if d.global_concurrency_limit else None,
                      "parameters": d.parameters}))
"""

TRAINING_IDS = """
import json
from iau_core.config import load_params
from iau_core.data import load_bundle
params = load_params("{project}/params.yaml")
print(json.dumps(load_bundle(params.data, "{project}/data").train.ids.tolist()))
"""
