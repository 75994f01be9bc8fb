"""`execution: dask`: the unlearn flow on a real 2-worker distributed.LocalCluster (prefect-dask's DaskTaskRunner)
records the same numbers per (method, seed) as the same flow run locally, one task after another; the reference
models and the methods ran in the workers' processes, not in the flow's."""

from __future__ import annotations

import math
import os

import pytest

from iau_core.config import ParamsError

SMALL = {
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 400, "val_size": 150, "test_size": 200, "shadow_pool_size": 400},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 4, "patience": 2},
    "unlearning": {"methods": ["iau"]},
    "mia": {"num_shadow": 2, "epochs": 10},
    "lira": {"num_reference": 2},
}
# What depends on the clock, not on the math: wall seconds and what is computed from them.
TIMED = ("unlearn_seconds", "speedup_vs_retrain", "avg_rank")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same flow twice, into two experiments of one store (so the dask run trains its own reference
    models instead of reusing the local run's): locally, then on a LocalCluster of 2 single-threaded workers."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.unlearn import unlearn

    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")
    mp.setenv("IAU_THREADS", "1")  # the local run computes with the workers' one thread: equal sums
    mp.delenv("IAU_EXECUTION", raising=False)
    mp.delenv("IAU_DASK_ADDRESS", raising=False)
    try:
        with prefect_test_harness(server_startup_timeout=None):  # PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
            local = unlearn(selection="random", seeds=[0, 1],
                            overrides={**SMALL, "tracking": {"experiment": "dask-test-local"}})
            dask = unlearn(selection="random", seeds=[0, 1],
                           overrides={**SMALL, "execution": "dask", "dask": {"workers": 2},
                                      "tracking": {"experiment": "dask-test-cluster"}})
            yield local, dask
    finally:
        mp.undo()


def children(client, parent_id: str) -> dict[tuple[str, str], object]:
    parent = client.get_run(parent_id)
    found = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {(r.data.tags["method"], r.data.tags["seed"]): r for r in found}


def reference_attack_metrics(client, experiment_id: str) -> dict[str, float]:
    (run,) = client.search_runs([experiment_id], "tags.kind = 'reference-attack'")
    return run.data.metrics


def assert_same_numbers(local: dict[str, float], dask: dict[str, float], where: str) -> None:
    compared = {k for k in local if not k.startswith(TIMED)}
    assert compared == {k for k in dask if not k.startswith(TIMED)}, where
    assert compared, f"{where}: no metrics to compare"
    for key in sorted(compared):
        assert math.isclose(local[key], dask[key], rel_tol=0, abs_tol=1e-9), \
            f"{where} {key}: {local[key]} != {dask[key]}"


@pytest.mark.slow
def test_dask_records_the_same_numbers_per_seed_as_local(runs):
    from mlflow import MlflowClient

    client = MlflowClient()
    local, dask = runs
    local_runs, dask_runs = children(client, local["parent_run_id"]), children(client, dask["parent_run_id"])
    methods = {"original", "retrain", "retrain_alt", "iau"}
    assert set(local_runs) == set(dask_runs) == {(m, s) for m in methods for s in ("0", "1")}
    for key, run in local_runs.items():
        assert_same_numbers(run.data.metrics, dask_runs[key].data.metrics, f"{key}")
        assert dask_runs[key].info.status == "FINISHED"
    # The seeds differ from each other (else "equal per seed" would hold for a flow that ignored the seed).
    assert local_runs[("iau", "0")].data.metrics["mu_gap"] != local_runs[("iau", "1")].data.metrics["mu_gap"]
    assert_same_numbers(reference_attack_metrics(client, local["experiment_id"]),
                        reference_attack_metrics(client, dask["experiment_id"]), "reference attack")
    assert_same_numbers(client.get_run(local["parent_run_id"]).data.metrics,
                        client.get_run(dask["parent_run_id"]).data.metrics, "parent")
    assert client.get_run(dask["parent_run_id"]).data.params["execution"] == "dask"


@pytest.mark.slow
def test_dask_ran_the_tasks_in_the_workers_processes(runs):
    """Each method's run names the process that computed it: the flow's locally, two other ones under dask."""
    from mlflow import MlflowClient

    client = MlflowClient()
    local, dask = runs
    here = f"{os.uname().nodename}/{os.getpid()}"
    assert {r.data.tags["process"] for r in children(client, local["parent_run_id"]).values()} == {here}
    workers = {r.data.tags["process"] for r in children(client, dask["parent_run_id"]).values()}
    assert here not in workers and len(workers) == 2, workers


def test_the_environment_chooses_the_execution(monkeypatch):
    from flows.unlearn import environment_overrides

    monkeypatch.setenv("IAU_EXECUTION", "dask")
    monkeypatch.setenv("IAU_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    assert environment_overrides() == {"execution": "dask", "dask": {"address": "tcp://10.0.0.5:8786"}}
    monkeypatch.setenv("IAU_EXECUTION", "ray")
    with pytest.raises(ParamsError, match="IAU_EXECUTION must be one of \\['local', 'dask'\\], got 'ray'"):
        environment_overrides()


def test_a_remote_cluster_needs_a_shared_tracking_server(monkeypatch, tmp_path):
    """Workers on other machines cannot write into this machine's SQLite file: refused in one line, before
    any cluster is contacted."""
    from flows.unlearn import dask_runner
    from iau_core.config import parse_params

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = parse_params({"execution": "dask", "dask": {"address": "tcp://10.0.0.5:8786"}})
    with pytest.raises(ParamsError, match="needs MLFLOW_TRACKING_URI set to an MLflow server"):
        dask_runner(params, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert dask_runner(params, tmp_path).address == "tcp://10.0.0.5:8786"


@pytest.mark.slow
def test_the_workers_report_their_task_runs_to_the_flows_prefect_api(runs):
    """Without the flow's PREFECT_API_URL each worker started a temporary Prefect server of its own: a uvicorn
    process per worker, and reference-model task runs the flow's server never listed."""
    from mlflow import MlflowClient
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    _, dask = runs
    flow_run_id = MlflowClient().get_run(dask["parent_run_id"]).data.tags["prefect_flow_run_id"]
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    names = {run.name for run in task_runs}
    assert {"reference-model-0", "reference-model-1"} <= names, names


def test_dask_workers_start_without_the_nannys_aggressive_malloc_trim(tmp_path):
    """Dask's default MALLOC_TRIM_THRESHOLD_=65536 made torch in a worker twice as slow (flows/unlearn.py,
    WORKER_MALLOC). Twice over: leaving the first cluster must leave distributed's own settings in place."""
    from flows.unlearn import task_runner
    from iau_core.config import parse_params

    def malloc_env() -> tuple[str | None, str | None]:
        return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_ARENA_MAX")

    params = parse_params({"execution": "dask", "dask": {"workers": 1}})
    for _ in range(2):
        with task_runner(params, tmp_path) as runner:
            assert runner.client.submit(malloc_env, pure=False).result() == (None, "1")
