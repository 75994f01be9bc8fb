"""End to end: the `unlearn` flow on digits under a Prefect test harness, against a temporary MLflow store.
Asserts the record METRICS.md promises ('What each run of the unlearn flow leaves in MLflow')."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 500, "val_size": 200, "test_size": 300, "shadow_pool_size": 600},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 6, "patience": 3},
    "unlearning": {"eta": 0.05},
    "mia": {"num_shadow": 2, "epochs": 10},
    "tracking": {"experiment": "flow-test", "registered_model": "flow-test-base"},
}
METHOD_KEYS = {"test_acc", "retain_acc", "forget_acc", "mu_gap", "mia_forget_asr", "ue_gap", "unlearn_seconds",
               "mia_auc", "tpr_at_1pct_fpr"}
LINEAGE_TAGS = {"flow", "selection", "data_version", "forget_set_sha256", "git_commit", "prefect_flow_run_id",
                "base_model"}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory, harness):
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    yield db
    mp.undo()


@pytest.fixture(scope="module")
def two_runs(store):
    from flows.unlearn import unlearn

    first = unlearn(selection="random", overrides=SMALL)
    second = unlearn(selection="outliers", overrides=SMALL)
    return first, second


@pytest.mark.slow
def test_flow_leaves_the_promised_record(two_runs):
    from mlflow import MlflowClient

    from iau_core.selection import forget_set_sha256

    client = MlflowClient()
    first, _ = two_runs
    parent = client.get_run(first["parent_run_id"])
    assert LINEAGE_TAGS <= set(parent.data.tags)
    assert parent.data.tags["selection"] == "random"
    assert parent.data.tags["data_version"] == yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    assert parent.data.tags["base_model"].startswith("models:/flow-test-base/")
    assert 0 <= parent.data.metrics["attack_strength"] <= 100
    assert parent.info.status == "FINISHED"

    manifest = client.download_artifacts(parent.info.run_id, "forget_set.csv")
    ids = [int(line) for line in Path(manifest).read_text().split()[1:]]
    assert forget_set_sha256(ids) == parent.data.tags["forget_set_sha256"]
    assert len(ids) == round(0.05 * 500)
    table = Path(client.download_artifacts(parent.info.run_id, "comparison.csv")).read_text()
    assert table.startswith("method,mu_gap,unlearn_seconds,ue_gap,avg_rank")

    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_method = {run.data.tags["method"]: run for run in children}
    assert set(by_method) == {"original", "retrain", "iau"}
    for method, run in by_method.items():
        assert METHOD_KEYS <= set(run.data.metrics), (method, set(run.data.metrics))
        assert run.info.status == "FINISHED"
        assert client.list_artifacts(run.info.run_id, "state_dict.pt") or client.list_artifacts(run.info.run_id)
    assert by_method["retrain"].data.metrics["mu_gap"] == 0
    assert by_method["retrain"].data.metrics["ue_gap"] == 0
    assert by_method["iau"].data.metrics["speedup_vs_retrain"] > 1
    assert "avg_rank" in by_method["iau"].data.metrics


@pytest.mark.slow
def test_second_run_reuses_base_model_and_attack(two_runs):
    from mlflow import MlflowClient

    client = MlflowClient()
    first, second = two_runs
    p1, p2 = (client.get_run(r["parent_run_id"]) for r in two_runs)
    assert p1.data.tags["base_model"] == p2.data.tags["base_model"]
    assert p2.data.tags["selection"] == "outliers"
    experiment = p1.info.experiment_id
    for kind in ("base", "shadow-attack"):
        assert len(client.search_runs([experiment], f"tags.kind = '{kind}'")) == 1, kind
    versions = client.search_model_versions("name = 'flow-test-base'")
    assert len(versions) == 1


def test_bad_params_fail_before_any_work(store, harness):
    from flows.unlearn import unlearn
    from iau_core.config import ParamsError

    with pytest.raises(ParamsError, match="training.lr"):
        unlearn(selection="random", overrides={**SMALL, "training": {"lr": -1.0}})


def test_prefect_yaml_deploys_the_unlearn_flow():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {"outliers", "random"} <= set(deployments)
    for name in ("outliers", "random"):
        module_path, func = deployments[name]["entrypoint"].split(":")
        flow_obj = getattr(importlib.import_module(module_path.removesuffix(".py").replace("/", ".")), func)
        assert flow_obj.name == "unlearn"
        assert deployments[name]["parameters"]["selection"] == name
