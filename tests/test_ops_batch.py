"""The nightly batch's state machine (ops/batch.py) in this process, with no Prefect server: a real ledger (SQLite)
and a real MLflow store and registry in a temporary project, tiny stand-in models, and a steps implementation that
records what the batch asked of it. The whole batch with trained models, kills and reruns is test_nightly.py's."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
import yaml
from mlflow import MlflowClient
from torch import nn

from iau_core.config import parse_params
from ledger import Ledger, default_ledger_url
from ops.batch import StepClock, batch_parent, process_pending
from ops.project import Project
from stores import registry, tracking

EXPERIMENT = "ops-batch-test"
DV0 = "0" * 32 + ".dir"


class RecordingSteps:
    """ops.batch_steps.BatchSteps that records each call; ensure_data fails when told to (a broken data store)."""

    def __init__(self, data_error: Exception | None = None) -> None:
        self.log = logging.getLogger("tests.ops_batch")
        self.started_by, self.flow_run_id = "test_ops_batch", None
        self.calls: list[str] = []
        self.data_error = data_error

    def ensure_data(self, root: Path) -> str:
        self.calls.append("ensure_data")
        if self.data_error is not None:
            raise self.data_error
        return DV0

    def unlearn(self, *args):
        raise AssertionError("no step past the data check is expected here")

    gate = publish_audit = unlearn

    def after_step(self, name: str) -> None:
        self.calls.append(f"after {name}")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating one takes seconds); each test registers a model of its own."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        yield tracking.configure(root, EXPERIMENT)
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def project(tmp_path, store, request):
    """A project folder with params, data.dvc and its own ledger, and a registered, promoted champion."""
    name = f"ops-batch-{request.node.name[5:40]}"
    (tmp_path / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": DV0, "path": "data"}]}))
    params = parse_params({"tracking": {"experiment": EXPERIMENT, "registered_model": f"{name}-base",
                                        "deployed_model": name}})
    ledger = Ledger(default_ledger_url(tmp_path))
    MlflowClient().create_registered_model(name)
    first = register(name, 0, {"data_version": DV0})
    registry.promote(first)
    ledger.record_champion(first.version, DV0, 100)
    yield Project(tmp_path, params, ledger)
    ledger.close()


def register(name: str, seed: int, tags: dict) -> registry.Version:
    torch.manual_seed(seed)
    experiment_id = MlflowClient().get_experiment_by_name(EXPERIMENT).experiment_id
    with tracking.run(experiment_id, f"model-{seed}", {"kind": "test"}) as run_id:
        tracking.log_state_dict(run_id, nn.Linear(4, 2))
    version = MlflowClient().create_model_version(name, f"runs:/{run_id}/model", run_id,
                                                  tags={k: str(v) for k, v in tags.items()})
    return registry.version(name, version.version)


def test_no_pending_requests_is_a_no_op_that_asks_no_step(project):
    steps = RecordingSteps()
    outcome = process_pending(project, steps)
    assert outcome.status == "no-op"
    assert outcome.champion == f"models:/{project.params.tracking.deployed_model}/1"
    assert steps.calls == [] and project.ledger.batches() == []


def test_a_failure_before_registration_releases_the_requests_and_ends_the_run_failed(project, store):
    parent = f"models:/{project.params.tracking.deployed_model}/1"
    project.ledger.add_requests([3, 5], "erasure", "normal", {3, 5, 7})
    steps = RecordingSteps(data_error=OSError("the DVC cache is gone"))
    with pytest.raises(OSError, match="DVC cache is gone"):
        process_pending(project, steps)
    assert steps.calls == ["ensure_data"]  # the failed step is neither timed nor reported as ended
    [batch] = project.ledger.batches()
    assert batch.status == "failed" and "DVC cache is gone" in batch.error and batch.steps == {}
    assert {r.status for r in project.ledger.list_requests()} == {"pending"}
    runs = [r for r in MlflowClient().search_runs([store], f"tags.kind = 'deletion-batch' and tags.batch_id = "
                                                  f"'{batch.id}'") if r.data.tags["parent_model_version"] == parent]
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["started_by"] == "test_ops_batch"
    # the next run claims them again, into a new batch
    with pytest.raises(OSError):
        process_pending(project, RecordingSteps(data_error=OSError("the DVC cache is gone")))
    assert [b.id for b in project.ledger.batches()] == [batch.id, batch.id + 1]


def test_a_resumed_batch_unlearns_from_the_ledgers_parent_not_the_moved_alias(project):
    """Killed right after `promote`: the alias names the batch's own version, the ledger still names the parent.
    The rerun's audit and tags must name the parent (they once named the new version as its own parent)."""
    project.ledger.add_requests([3], "erasure", "normal", {3})
    claimed = project.ledger.open_batch("1", DV0)
    name = project.params.tracking.deployed_model
    own = register(name, 1, {"batch_id": claimed.id, "parent_version": "1"})
    registry.promote(own)  # what the killed run did last
    resumed = project.ledger.open_batch(own.version, DV0)  # the rerun: the running batch, as it was claimed
    assert resumed.resumed and resumed.parent_model_version == "1"
    parent = batch_parent(name, resumed, registry.champion(name))
    assert parent.version == "1" and parent.version != own.version
    fresh = batch_parent(name, claimed, registry.version(name, "1"))
    assert fresh.version == "1"


def test_each_step_is_timed_into_the_ledger_before_the_hook_hears_of_it(project):
    project.ledger.add_requests([3], "erasure", "normal", {3})
    batch = project.ledger.open_batch("1", DV0)
    heard = []

    class Hook(RecordingSteps):
        def after_step(self, name: str) -> None:  # what a crash test's kill sees: the step is in the ledger
            heard.append((name, dict(project.ledger.batch(batch.id).steps)))

    clock = StepClock(project.ledger, batch.id, Hook())
    with clock("data"):
        pass
    with pytest.raises(RuntimeError), clock("champion"):
        raise RuntimeError("weights unreadable")
    assert [name for name, _ in heard] == ["data"] and "data" in heard[0][1]
    assert set(project.ledger.batch(batch.id).steps) == {"data"}


def test_a_version_registered_by_its_weights_gets_its_servable_copy_later(project):
    """Registration on the critical path writes the weights only (what the pipeline reloads, weights_only); the pt2
    program with its signature (torch.export: seconds) is filled in afterwards, once, into the same version."""
    from mlflow.models import get_model_info

    name = project.params.tracking.deployed_model
    experiment_id = MlflowClient().get_experiment_by_name(EXPERIMENT).experiment_id
    torch.manual_seed(3)
    model, x = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval(), torch.randn(5, 1, 4, 4)
    run_id = tracking.start_run(experiment_id, "batch", {"kind": "test"})
    version = registry.register_weights(name, run_id, model, "iau", {"batch_id": "7"}, "iau: batch 7")
    assert version.tags["batch_id"] == "7" and registry.find(name, "batch_id", "7") == version
    assert not registry.servable(version)
    state = tracking.load_state_dict(run_id)  # torch.load(weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    tracking.finish(run_id)  # the batch's run ends before the export, as the requests are done before it
    assert registry.export_servable(version, model, x[:2]) and registry.servable(version)
    assert not registry.export_servable(version, model, x[:2])  # a rerun exports nothing twice
    with torch.no_grad():
        torch.testing.assert_close(mlflow.pytorch.load_model(version.uri)(x), model(x))
    signature = get_model_info(version.uri).signature
    assert signature is not None and "(-1, 1, 4, 4)" in str(signature.inputs)


def test_the_drift_counters_grow_with_approximate_batches_and_restart_with_a_retrain():
    """ops.drift computes, the ledger stores (test_ledger_batches.py checks what it stores): 100 records at the
    last full training, 5 forgotten over 2 approximate batches."""
    from datetime import UTC, datetime

    from ledger import ChampionView, DriftCounters
    from ops.drift import counters_after

    parent = ChampionView("3", "iau", 2, DV0, datetime(2026, 12, 7, tzinfo=UTC), 2, 5, 100)
    assert counters_after(parent, "iau", 4, kept=False) == DriftCounters(3, 9, 100)
    assert counters_after(parent, "finetune", 4, kept=False) == DriftCounters(3, 9, 100)
    assert counters_after(parent, "retrain", 4, kept=False) == DriftCounters(0, 0, 91)  # 100 - 5 - 4 left
    # sisa is exact too (its model is the one retraining on D_r gives): the counters restart as for retraining
    assert counters_after(parent, "sisa", 4, kept=False) == DriftCounters(0, 0, 91)
    # the champion kept unchanged: no new batch of drift, but its records count toward the forgotten share
    assert counters_after(parent, "iau", 4, kept=True) == DriftCounters(2, 9, 100)
