"""The nightly deletion batch end to end, on a project of its own (digits, a DVC repo with a local remote, a
SQLite MLflow store and ledger): the champion (`iau train`, a Prefect flow, against a real Prefect server on
loopback), then batches run by `iau nightly` in-process (no Prefect server), escalations, and every fault the issue
names. Runs that must be killed run as subprocesses: tests/nightly_kill.py kills the batch right after a named
step (the steps' test hook); the unit tests of the state machine are in test_ops_batch.py. Every test here uses the
one trained project, in file order (each leaves its batches behind for the next; the lost MLflow store comes last),
so they stay in one module that trains once; a killed `iau train` and its Prefect server, which needs no champion,
is test_train_prefect_server.py. What the end-to-end tests share (commands, the trained project, the ledger and
audit read back) is tests/nightly_helpers.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.nightly_helpers import (
    PYTHON,
    REPO,
    SMALL,
    add_requests,
    assert_forgotten_once,
    audit_of,
    champion_of,
    iau,
    kill_after,
    ledger_of,
    pick,
    run,
    statuses,
    trained_champion,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project of its own (sandbox/projects.py); its champion is trained by `iau train`."""
    from sandbox.projects import make_project

    with trained_champion(make_project(tmp_path_factory.mktemp("nightly") / "project", SMALL),
                          tmp_path_factory) as root:
        yield root


def champion(project: Path):
    return champion_of(SMALL["tracking"]["deployed_model"])


def versions_of_batch(batch_id: int) -> list:
    from mlflow import MlflowClient

    name = SMALL["tracking"]["deployed_model"]
    return MlflowClient().search_model_versions(f"name = '{name}' and tags.batch_id = '{batch_id}'")


def test_no_pending_requests_is_a_no_op(project):
    before = champion(project).version
    result = iau(project, "nightly")
    assert "no pending deletion requests" in (result.stdout + result.stderr)
    assert champion(project).version == before


def test_a_batch_is_unlearned_gated_promoted_forgotten_and_audited(project):
    from mlflow import MlflowClient

    parent = champion(project)
    ids = pick(project, 5)
    add_requests(project, ids)
    iau(project, "nightly")
    new = champion(project)
    assert int(new.version) > int(parent.version)
    assert new.tags["method"] == "iau" and new.tags["parent_version"] == str(parent.version)
    assert new.tags["data_version"] != parent.tags["data_version"]
    assert_forgotten_once(project, ids)
    # the ledger names the version that first excludes each record, and the data version
    rows = [r for r in ledger_of(project).list_requests() if r.sample_id in ids]
    assert {r.model_version for r in rows} == {str(new.version)}
    assert {r.data_version for r in rows} == {new.tags["data_version"]}
    # data.dvc names the new version, and the default remote holds it
    assert yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"] == new.tags["data_version"]
    status = run(str(REPO / ".venv/bin/dvc"), "status", "-c", cwd=project).stdout
    assert "new:" not in status and "missing" not in status
    # the audit: Markdown and JSON on the batch's run, with the gate's numbers
    run_ = MlflowClient().get_run(new.run_id)
    batch_id = run_.data.tags["batch_id"]
    files = {f.path for f in MlflowClient().list_artifacts(new.run_id, "audit")}
    assert files == {f"audit/batch-{batch_id}.md", f"audit/batch-{batch_id}.json"}
    # five records of a champion that barely leaks: the gate cannot see a removal, so its privacy verdict is
    # inconclusive, never passed; the default policy promotes with that verdict recorded
    assert run_.data.metrics["gate.iau.passed"] == 0.0
    assert run_.data.metrics["gate.iau.privacy_inconclusive"] == 1.0
    assert run_.data.tags["gate.iau.privacy_verdict"] == "inconclusive"
    audit = MlflowClient().download_artifacts(new.run_id, f"audit/batch-{batch_id}.md")
    assert "## Gate for iau: privacy inconclusive" in Path(audit).read_text()
    assert run_.info.status == "FINISHED"
    # registered by its weights on the critical path; the servable pt2 copy, with its signature, after the requests
    from mlflow.models import get_model_info

    steps = list(ledger_of(project).batch(int(batch_id)).steps)
    assert steps.index("export-model") > steps.index("finish") > steps.index("register")
    assert get_model_info(f"models:/{new.name}/{new.version}").signature is not None
    # the history of one record tells when and how it was removed, and what the gate could (not) see
    shown = iau(project, "requests", "show", str(ids[0])).stdout
    assert "done" in shown and f"model version {new.version}" in shown and "gate" in shown
    assert "privacy gate (iau, lira): inconclusive" in shown


def test_an_inconclusive_gate_escalates_when_the_policy_says_retrain(project):
    """nightly.gate.when_inconclusive: retrain: a gate that cannot see a removal sends the batch to retraining,
    whose model is then promoted (no stronger fallback), its verdict recorded."""
    ids = pick(project, 3)
    add_requests(project, ids)
    iau(project, "nightly", "--set", "nightly.gate.when_inconclusive=retrain", "--set", "nightly.ladder=[iau,retrain]")
    new = champion(project)
    assert new.tags["method"] == "retrain"
    assert_forgotten_once(project, ids)
    shown = iau(project, "requests", "show", str(ids[0])).stdout
    assert "gate inconclusive, policy retrain" in shown and "privacy gate (retrain, lira): inconclusive" in shown


def test_a_high_tier_request_escalates_to_retraining(project):
    ids = pick(project, 3)
    add_requests(project, ids[:2])
    add_requests(project, ids[2:], tier="high")
    iau(project, "nightly")
    new = champion(project)
    assert new.tags["method"] == "retrain"
    assert_forgotten_once(project, ids)
    history = iau(project, "requests", "show", str(ids[0])).stdout
    assert "escalat" in history and "high-tier" in history


def test_nan_during_unlearning_fails_the_gate_and_escalates(project):
    """A step so large the parameters overflow: the gate must catch it, and retraining takes over."""
    ids = pick(project, 4)
    add_requests(project, ids)
    iau(project, "nightly", "--set", "unlearning.eta=1.0e+38", "--set", "nightly.ladder=[iau,retrain]")
    new = champion(project)
    assert new.tags["method"] == "retrain"
    assert_forgotten_once(project, ids)
    shown = iau(project, "requests", "show", str(ids[0])).stdout
    assert "not finite" in shown and "privacy gate (iau, lira): failed" in shown


def test_a_rejected_rung_is_recorded_and_the_next_rung_promoted(project):
    """nightly.ladder [iau, finetune, retrain]: IAU's overflowing step fails the gate, fine-tuning is tried next and
    promoted; retraining never runs. gates.json and `iau requests show` list both attempts with their seconds."""
    import json

    from mlflow import MlflowClient

    ids = pick(project, 4)
    add_requests(project, ids)
    # the rungs' stop rule off, so fine-tuning keeps its epochs (a rung that kept none leaves the champion unchanged)
    iau(project, "nightly", "--set", "unlearning.eta=1.0e+38", "--set", "nightly.ladder=[iau,finetune,retrain]",
        "--set", "nightly.stop_rule.val_drop_budget=100.0",
        "--set", "nightly.stop_rule.stop_at_heldout_loss=false")
    new = champion(project)
    shown = iau(project, "requests", "show", str(ids[0])).stdout
    assert new.tags["method"] == "finetune", shown
    assert_forgotten_once(project, ids)
    gates = json.loads(Path(MlflowClient().download_artifacts(new.run_id, "gates.json")).read_text())
    assert list(gates) == ["iau", "finetune"] and [g["accepted"] for g in gates.values()] == [False, True]
    assert all(g["seconds"] > 0 for g in gates.values())
    assert "privacy gate (iau, lira): failed" in shown and "rejected" in shown
    assert "privacy gate (finetune, lira)" in shown and "accepted" in shown and "(retrain" not in shown


def test_a_step_that_changes_nothing_registers_no_version(project):
    """eta 0: the IAU step leaves the champion's parameters as they were. The gate, which cannot see membership on
    a few records of this champion, accepts it (inconclusive, policy promote); the requests are done on the champion
    itself, the data forgets them, and no version is registered."""
    before = champion(project)
    ids = pick(project, 3)
    add_requests(project, ids)
    result = iau(project, "nightly", "--set", "unlearning.eta=0.0")
    assert "no change: the champion already" in result.stdout
    assert "next: git add data.dvc forgotten.csv" in result.stdout  # the forgotten version must be committed
    assert champion(project).version == before.version
    assert_forgotten_once(project, ids)
    rows = [r for r in ledger_of(project).list_requests() if r.sample_id in ids]
    assert {r.model_version for r in rows} == {str(before.version)}
    assert versions_of_batch(rows[0].batch_id) == []
    shown = iau(project, "requests", "show", str(ids[0])).stdout
    assert "no change: the champion already showed" in shown


STAGES = ["champion", "unlearn-iau", "gate-iau", "register", "forget-data", "promote", "audit", "finish"]


def test_sigkill_at_every_stage_then_rerun_processes_each_request_exactly_once(project):
    """One batch, killed right after each of its steps in turn (each rerun resumes the last): in the end every
    request is done once, one model version holds the batch, and the data lists each record once. The audit,
    written again by the runs after the kills past `promote` and `audit`, names the batch's parent as the parent
    (the alias had already moved to the new version: it once named the new version as its own parent)."""
    parent = champion(project)
    ids = pick(project, 5)
    add_requests(project, ids)
    for stage in STAGES:
        kill_after(project, stage)
    iau(project, "nightly")  # after the last kill (past 'finish'), there is nothing left: a no-op
    assert_forgotten_once(project, ids)
    batch_ids = {r.batch_id for r in ledger_of(project).list_requests() if r.sample_id in ids}
    assert len(batch_ids) == 1
    batch_id = batch_ids.pop()
    [version] = versions_of_batch(batch_id)
    audit = audit_of(version.run_id, batch_id)
    name = SMALL["tracking"]["deployed_model"]
    assert audit["parent_model_version"] == f"models:/{name}/{parent.version}"
    assert audit["model_version"] == f"models:/{name}/{version.version}" and audit["resumed"]


# `iau nightly`, reporting at its exit which heavy packages it had imported
HEAVY_AT_EXIT = ("import atexit, sys\n"
                 "atexit.register(lambda: print('heavy:', [m for m in ('torch', 'mlflow', 'dvc', 'prefect') "
                 "if m in sys.modules], file=sys.stderr))\n"
                 "from cli.main import app\n"
                 "app(['nightly'], prog_name='iau')\n")


def test_a_second_nightly_refuses_while_one_holds_the_lock(project):
    """Refused in one line naming the holder, before anything slow: no torch, MLflow, DVC or Prefect imported."""
    import time

    ids = pick(project, 2)
    add_requests(project, ids)
    with ledger_of(project).nightly_lock(owner="a test holding the batch"):
        start = time.perf_counter()
        second = run(PYTHON, "-c", HEAVY_AT_EXIT, env={"IAU_PROJECT_DIR": str(project)}, check=False)
        seconds = time.perf_counter() - start
    assert second.returncode == 1
    errors = [line for line in second.stderr.splitlines() if not line.startswith("heavy:")]
    assert len(errors) == 1 and "a test holding the batch" in errors[0], second.stderr
    assert "heavy: []" in second.stderr, second.stderr
    print(f"refused in {seconds:.2f} s (a whole python process, on a shared machine)")
    assert statuses(project, ids) == {"pending"}
    iau(project, "nightly")
    assert statuses(project, ids) == {"done"}


def test_unreachable_tracking_fails_cleanly_and_leaves_requests_pending(project):
    ids = pick(project, 2)
    add_requests(project, ids)
    env = {"MLFLOW_TRACKING_URI": "http://user:s3cret@127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    failed = iau(project, "nightly", env=env, check=False)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "unreachable" in out and "s3cret" not in out
    assert statuses(project, ids) == {"pending"}


def test_data_that_no_longer_matches_data_dvc_is_refused_before_training(project):
    records = project / "data" / "digits" / "records.csv"
    original = records.read_bytes()
    records.write_bytes(original + b"99999,0,train\n")  # a record nobody versioned
    try:
        failed = iau(project, "nightly", check=False)
        out = failed.stdout + failed.stderr
        assert failed.returncode != 0 and "does not match data.dvc" in out
        assert "unlearn-batch" not in out  # refused before any unlearning
        pending = [r.sample_id for r in ledger_of(project).list_requests() if r.status == "pending"]
        assert pending and not [r for r in ledger_of(project).list_requests() if r.status == "processing"]
    finally:
        records.write_bytes(original)


def test_a_corrupted_or_missing_champion_is_a_clear_error_and_nothing_is_done(project):
    from mlflow import MlflowClient

    ids = pick(project, 2)
    add_requests(project, ids)
    current = champion(project)
    state = Path(MlflowClient().download_artifacts(current.run_id, "state_dict.pt"))
    stored = next((project / "mlartifacts").rglob(f"{current.run_id}/artifacts/state_dict.pt"))
    backup = state.read_bytes()
    stored.write_bytes(b"not a state dict")
    try:
        failed = iau(project, "nightly", check=False)
        out = failed.stdout + failed.stderr
        assert failed.returncode != 0 and "cannot be loaded" in out
        assert statuses(project, ids) == {"pending"}
    finally:
        stored.write_bytes(backup)
    MlflowClient().delete_registered_model_alias(SMALL["tracking"]["deployed_model"], "champion")
    try:
        failed = iau(project, "nightly", check=False)
        assert failed.returncode != 0 and "iau train" in failed.stdout + failed.stderr
        assert statuses(project, ids) == {"pending"}
    finally:
        MlflowClient().set_registered_model_alias(SMALL["tracking"]["deployed_model"], "champion", current.version)
    iau(project, "nightly")  # the pending requests go through once the champion is back
    assert_forgotten_once(project, ids)


def test_purge_removes_old_versions_holding_forgotten_records(project):
    report = iau(project, "purge").stdout
    assert "removed" in report
    again = iau(project, "purge").stdout
    assert "nothing" in again.lower()


def test_a_batch_that_fails_cleanly_ends_its_mlflow_run_failed(project):
    """A clean failure (here: data that no longer matches data.dvc) releases the requests and ends the batch's
    MLflow run FAILED; it stayed RUNNING."""
    from mlflow import MlflowClient

    ids = pick(project, 2)
    add_requests(project, ids)
    records = project / "data" / "digits" / "records.csv"
    original = records.read_bytes()
    records.write_bytes(original + b"99998,0,train\n")
    try:
        assert iau(project, "nightly", check=False).returncode != 0
    finally:
        records.write_bytes(original)
    failed = ledger_of(project).batches()[-1]
    assert failed.status == "failed" and statuses(project, ids) == {"pending"}
    experiment = MlflowClient().get_experiment_by_name(SMALL["tracking"]["experiment"])
    runs = MlflowClient().search_runs([experiment.experiment_id],
                                      f"tags.kind = 'deletion-batch' and tags.batch_id = '{failed.id}'")
    assert [r.info.status for r in runs] == ["FAILED"]
    iau(project, "nightly")  # the next run takes them
    assert statuses(project, ids) == {"done"}


def test_nightly_runs_in_process_without_a_prefect_server(project, tmp_path):
    """No PREFECT_API_URL and an empty Prefect home: `iau nightly` still runs a batch, and never imports Prefect."""
    ids = pick(project, 2)
    add_requests(project, ids)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"IAU_PROJECT_DIR": str(project), "PREFECT_HOME": str(tmp_path / "prefect-home")})
    done = subprocess.run([PYTHON, "-c", HEAVY_AT_EXIT], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "'prefect'" not in done.stderr.splitlines()[-1] and "'torch'" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "prefect-home").exists()
    assert_forgotten_once(project, ids)


def test_doctor_releases_a_batch_that_registered_nothing_and_says_ok(project):
    ids = pick(project, 2)
    add_requests(project, ids)
    kill_after(project, "champion")
    assert statuses(project, ids) == {"processing"}
    batch_id = ledger_of(project).batches()[-1].id
    done = iau(project, "doctor")
    assert f"released batch {batch_id}: no model version was registered" in done.stdout
    assert "ok: the ledger and the model registry agree" in done.stdout
    assert statuses(project, ids) == {"pending"}
    assert "released batch" not in iau(project, "doctor").stdout  # nothing left to repair


def test_a_lost_mlflow_store_is_refused_and_leaves_no_request_processing(project):
    """mlflow.db and mlartifacts deleted between batches (and one batch killed before registering): the ledger's
    champion is gone from the registry, so nightly and train refuse before registering anything, saying what to do,
    and the killed batch's requests go back to pending instead of staying `processing`. Must run last: the
    project's MLflow store is gone afterwards."""
    import shutil

    stuck, waiting = pick(project, 4)[:2], pick(project, 4)[2:]
    add_requests(project, stuck)
    kill_after(project, "champion")
    assert statuses(project, stuck) == {"processing"}
    add_requests(project, waiting)
    (project / "mlflow.db").unlink()
    shutil.rmtree(project / "mlartifacts")
    for command in ("nightly", "train", "doctor"):
        refused = iau(project, command, check=False)
        out = refused.stdout + refused.stderr
        assert refused.returncode == 1, (command, out)
        assert "no such version: it has lost its history" in out and "Restore the MLflow store" in out, command
        assert statuses(project, stuck + waiting) == {"pending"}, command
    listed = iau(project, "requests", "list", "--status", "processing").stdout
    assert "no deletion requests" in listed
