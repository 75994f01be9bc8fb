"""The models forget too (stores/model_purge.py): against a real MLflow store (SQLite, local `mlartifacts/`) and a
real ledger, a lineage as `iau train`, `make run` and two nightly batches leave it, built with the pipeline's own
calls (tracking.log_model, registry.register); the weights are tiny stand-ins."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow import MlflowClient
from torch import nn
from typer.testing import CliRunner

import stores.model_purge
from cli.main import app
from iau_core.config import parse_params
from ledger import Ledger
from ops.purge import purge_models, receipts_due
from stores import registry, tracking
from stores.artifacts import CHECKPOINTS_DIR
from stores.champion import GRADIENT_FILE
from tests.ledger_calls import finish

DEPLOYED, BASE = "purge-test-deployed", "purge-test-base"
DV0, DV1, DV2 = "0" * 32 + ".dir", "1" * 32 + ".dir", "2" * 32 + ".dir"
WEIGHT_SUFFIXES = (".pt", ".pt2")  # state_dict.pt, summed_gradient.pt, the LoggedModel's pt2 program


def tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with its own MLflow store (artifacts in mlartifacts/), ledger and data.dvc."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def params(retention_hours: float = 0.0, retention_batches: int = 0):
    return parse_params({"tracking": {"experiment": "purge-test", "registered_model": BASE,
                                      "deployed_model": DEPLOYED},
                         "nightly": {"purge": {"model_retention_hours": retention_hours,
                                               "model_retention_batches": retention_batches}}})


def set_data_version(root: Path, md5: str) -> None:
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": "data"}]}))


def trained_run(experiment_id: str, name: str, tags: dict, model: nn.Module, registered: str | None = None,
                gradient: bool = False) -> str:
    with tracking.run(experiment_id, name, tags) as run_id:
        tracking.log_model(run_id, model, torch.randn(2, 1, 4, 4), registered, f"{name} (test)")
        if gradient:
            tracking.log_text(run_id, "a summed gradient stand-in", GRADIENT_FILE)
    return run_id


def nightly_batch(ledger: Ledger, experiment_id: str, ids: list[int], parent: registry.Version, before: str,
                  after: str, seed: int) -> registry.Version:
    """What flows/nightly.py records: a batch run whose model is registered, then promoted, then the ledger."""
    batch = ledger.open_batch(parent.version, before)
    run_id = tracking.start_run(experiment_id, f"nightly-batch-{batch.id}",
                                {"kind": "deletion-batch", "batch_id": str(batch.id), "data_version": before})
    tracking.log_model(run_id, tiny(seed), torch.randn(2, 1, 4, 4))
    version = registry.register(DEPLOYED, run_id, {"batch_id": batch.id, "method": "iau", "data_version": after},
                                f"iau: batch {batch.id}")
    registry.promote(version)
    tracking.log_text(run_id, "# audit", f"audit/batch-{batch.id}.md")
    finish(ledger, batch.id, version.version, after, "iau", {"passed": True}, run_id)
    tracking.set_tags(run_id, {"data_version_after": after})
    tracking.log_text(run_id, "a summed gradient stand-in", GRADIENT_FILE)
    tracking.finish(run_id)
    return version


def source_runs() -> dict[str, str]:
    """Every run id, and every LoggedModel id (also deleted ones), of the store -> the run that made it."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name("purge-test").experiment_id
    runs = client.search_runs([experiment], run_view_type=mlflow.entities.ViewType.ALL)
    found = {r.info.run_id: r.info.run_id for r in runs}
    for run in runs:
        for output in (run.outputs.model_outputs if run.outputs else []):
            found[output.model_id] = run.info.run_id
    return found


def weight_files_by_version(root: Path) -> dict[str, dict[str, list[Path]]]:
    """Every file under mlartifacts/ that holds weights or gradients: data version it was trained on -> the run
    that trained it -> the files."""
    client, by_owner = MlflowClient(), source_runs()
    held: dict[str, dict[str, list[Path]]] = {}
    for path in (root / "mlartifacts").rglob("*"):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            run_id = by_owner[next(part for part in path.parts if part in by_owner)]
            version = stores.model_purge.weights_data_version(client.get_run(run_id).data.tags)
            held.setdefault(version, {}).setdefault(run_id, []).append(path)
    return held


def test_purge_removes_every_weight_trained_on_a_version_that_held_a_forgotten_record(project):
    root = project
    set_data_version(root, DV0)
    experiment_id = tracking.configure(root, "purge-test")
    client = MlflowClient()
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    # `iau train`, `make run`'s base model, an unlearned model of its methods, the attacker, a soft-deleted run
    champion_run = trained_run(experiment_id, "champion-training", {"kind": "champion-training", "data_version": DV0},
                               tiny(0), gradient=True)
    tracking.log_text(champion_run, "a shard's weights stand-in", f"{CHECKPOINTS_DIR}/shard0.pt")  # SISA's
    first = registry.register(DEPLOYED, champion_run, {"method": "train", "data_version": DV0}, "train (test)")
    registry.promote(first)
    ledger.record_champion(first.version, data_version=DV0, train_size=100)
    trained_run(experiment_id, "base-model-seed0", {"kind": "base", "data_version": DV0}, tiny(1), BASE)
    trained_run(experiment_id, "unlearn-iau-seed0", {"method": "iau", "data_version": DV0}, tiny(2))
    reference = trained_run(experiment_id, "reference-attack", {"kind": "reference-attack", "data_version": DV0},
                            tiny(3))
    deleted = trained_run(experiment_id, "deleted-base", {"kind": "base", "data_version": DV0}, tiny(4))
    client.delete_run(deleted)  # soft-deleted: MLflow keeps its files (mlflow #1555)

    ledger.add_requests([5, 6], "gdpr", "normal", {5, 6, 7})
    second = nightly_batch(ledger, experiment_id, [5, 6], first, DV0, DV1, seed=5)
    set_data_version(root, DV1)
    assert set(weight_files_by_version(root)) == {DV0, DV1}

    report = purge_models(root, params(), ledger, experiment_id)
    # nothing trained on DV0 is left, except the attacker's statistics, which no request reaches
    left = weight_files_by_version(root)
    assert set(left[DV0]) == {reference}
    assert set(left[DV1]) == {second.run_id}
    assert GRADIENT_FILE in {p.name for p in left[DV1][second.run_id]}  # the live champion's cache stays
    removed_versions = {r.target for r in report.removed if r.kind == "registry-version"}
    assert removed_versions == {f"{DEPLOYED}/{first.version}", f"{BASE}/1"}
    assert {r.target for r in report.removed if r.kind == "file"} >= {
        f"{champion_run}/state_dict.pt", f"{champion_run}/{GRADIENT_FILE}", f"{deleted}/state_dict.pt",
        f"{champion_run}/{CHECKPOINTS_DIR}"}
    assert report.cleared_data_versions == [DV0] and report.receipts == [5, 6] and report.not_removed == []
    # the live champion loads exactly; metadata and audit stay
    assert registry.champion(DEPLOYED).version == second.version
    assert tracking.load_state_dict(second.run_id).keys() == tiny(0).state_dict().keys()
    assert client.get_run(champion_run).data.tags["data_version"] == DV0
    assert {f.path for f in client.list_artifacts(second.run_id, "audit")} == {"audit/batch-1.md"}
    assert "removed" in report.to_markdown() and f"{DEPLOYED}/{first.version}" in report.to_markdown()

    again = purge_models(root, params(), ledger, experiment_id)
    assert again.removed == [] and again.receipts == []

    # a second batch, with a retention window: its parent's weights stay until the window has passed
    ledger.add_requests([7], "gdpr", "normal", {7})
    third = nightly_batch(ledger, experiment_id, [7], second, DV1, DV2, seed=7)
    set_data_version(root, DV2)
    soon = purge_models(root, params(retention_hours=24), ledger, experiment_id)
    assert not [r for r in soon.removed if r.kind == "registry-version"]
    assert any("retained until" in line and second.run_id in line for line in soon.kept)
    assert soon.receipts == []
    # the default window: the new champion (batch 2's) must first serve a batch of its own
    waiting = purge_models(root, params(retention_batches=1), ledger, experiment_id,
                           now=datetime.now(UTC) + timedelta(hours=25))
    assert not [r for r in waiting.removed if r.kind == "registry-version"] and waiting.receipts == []
    assert any("has served 1 batch(es)" in line and second.run_id in line for line in waiting.kept)
    assert parse_params({}).nightly.purge.model_retention_batches == 1
    later = purge_models(root, params(retention_hours=24), ledger, experiment_id,
                         now=datetime.now(UTC) + timedelta(hours=25))
    assert {r.target for r in later.removed if r.kind == "registry-version"} == {f"{DEPLOYED}/{second.version}"}
    assert later.receipts == [7]
    assert set(weight_files_by_version(root)) - {DV0} == {DV2}
    assert registry.champion(DEPLOYED).version == third.version

    # the receipt of one request, as the operator sees it
    shown = CliRunner().invoke(app, ["--ledger-url", f"sqlite:///{root / 'ledger.db'}", "--project-root", str(root),
                                     "requests", "show", "5"])
    assert shown.exit_code == 0, shown.output
    receipt = shown.stdout[shown.stdout.index("receipt:"):]
    assert f"model version: {second.version}" in receipt and f"data version:  {DV1}" in receipt
    assert f"removed by model purge {report.purge_id}" in receipt and f"{DEPLOYED}/{first.version}" in receipt
    assert "weights-purged" in shown.stdout


def test_a_killed_model_purge_is_finished_by_the_next(project, monkeypatch):
    root = project
    set_data_version(root, DV0)
    experiment_id = tracking.configure(root, "purge-test")
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    run_id = trained_run(experiment_id, "champion-training", {"kind": "champion-training", "data_version": DV0},
                         tiny(0), gradient=True)
    first = registry.register(DEPLOYED, run_id, {"method": "train", "data_version": DV0}, "train (test)")
    registry.promote(first)
    ledger.record_champion(first.version, data_version=DV0, train_size=100)
    ledger.add_requests([5], "gdpr", "normal", {5})
    nightly_batch(ledger, experiment_id, [5], first, DV0, DV1, seed=1)
    set_data_version(root, DV1)

    real_remove, calls = stores.model_purge.remove, []

    def killed_after_one(client, action):
        calls.append(action)
        if len(calls) == 2:
            raise KeyboardInterrupt("SIGKILL")
        real_remove(client, action)

    monkeypatch.setattr(stores.model_purge, "remove", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        purge_models(root, params(), ledger, experiment_id)
    monkeypatch.setattr(stores.model_purge, "remove", real_remove)
    left = ledger.unfinished_model_purge()
    assert left is not None and len(left.plan["actions"]) > 2

    report = purge_models(root, params(), ledger, experiment_id)
    assert report.finished_earlier == [left.id]
    assert ledger.model_purge(left.id).status == "done"
    assert set(weight_files_by_version(root)) == {DV1}
    assert ledger.list_requests()[0].model_purge_id == left.id


def test_the_receipt_rule_needs_every_version_that_held_the_record_cleared():
    """ops/purge.py's rule (the ledger only stores its answer): a record of batch 2 was in batch 2's parent version
    and in every version before it; a receipt comes only once all of them are left without weights."""
    from types import SimpleNamespace as View

    batches = [View(id=1, status="done", parent_data_version=DV0, data_version=DV1),
               View(id=2, status="done", parent_data_version=DV1, data_version=DV2),
               View(id=3, status="failed", parent_data_version=DV2, data_version=None)]
    done = [View(sample_id=5, batch_id=1, model_purge_id=None), View(sample_id=7, batch_id=2, model_purge_id=None),
            View(sample_id=9, batch_id=1, model_purge_id=4)]  # 9 has its receipt already
    assert receipts_due(done, batches, {DV0}) == [5]
    assert receipts_due(done, batches, {DV1}) == []  # 7 was in DV0 too
    assert receipts_due(done, batches, {DV0, DV1}) == [5, 7]
