"""The ledger's batch life cycle and the nightly lock, on SQLite and on a real PostgreSQL server: a batch claims
every pending request and is resumed after a kill, finishes once (gate recorded, idempotent, never two versions),
escalates to retraining, is released back to pending; the drift counters and step times it keeps; and the nightly
lock (one holder at a time, another host's lock refused, a dead or reused pid's lock taken over, a lock removed by
someone else left to its new holder). Schema and intake are in test_ledger.py; the fixtures both share are
tests/ledger_fixtures.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from ledger import Ledger, LedgerError, LockHeld
from ledger.liveness import this_host
from ledger.models import LockRow
from tests.ledger_calls import finish
from tests.ledger_fixtures import (  # noqa: F401 (fixtures: pytest finds them here by name)
    D,
    champion_and_batch,
    ledger_fixture,
    postgres_server_fixture,
    url_fixture,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the batch life cycle -----------------------------------------------------------------------------------------


def test_open_batch_claims_every_pending_request_and_resumes_the_running_one(ledger):
    assert ledger.open_batch("1", "dv0") is None  # nothing pending
    ledger.add_requests([101, 102], "gdpr", "normal", D)
    ledger.add_requests([103], "poisoned", "high", D)
    batch = ledger.open_batch("1", "dv0")
    assert batch.sample_ids == [101, 102, 103] and not batch.resumed
    assert batch.tiers == {101: "normal", 102: "normal", 103: "high"} and batch.has_high_tier
    assert all(v.status == "processing" and v.batch_id == batch.id for v in ledger.list_requests())

    ledger.add_requests([104], "gdpr", "normal", D)  # arrives while the batch runs
    again = ledger.open_batch("1", "dv0")  # e.g. the process was killed and the flow runs again
    assert again.resumed and again.id == batch.id and again.sample_ids == batch.sample_ids
    assert [v.sample_id for v in ledger.list_requests("pending")] == [104]  # left for the next batch
    _, events = ledger.history(101)
    assert [e.kind for e in events] == ["requested", "claimed"]  # resuming claimed nothing twice


def test_finish_marks_done_records_the_gate_and_is_idempotent(ledger):
    batch = champion_and_batch(ledger)
    ledger.record_step(batch.id, "unlearn", 0.5)
    gate = {"val_acc_drop": np.float32(0.25), "attack_auc": 0.51, "passed": True, "loss": float("nan")}
    finish(ledger, batch.id, "2", "dv1", "iau", gate, "run-1")
    events_before = ledger.history(101)[1]
    finish(ledger, batch.id, "2", "dv1", "iau", gate, "run-1")  # the resumed run repeats itself: no-op
    assert ledger.history(101)[1] == events_before
    assert ledger.forgotten_ids() == [101, 102, 103]
    request = ledger.list_requests()[0]
    assert (request.status, request.model_version, request.data_version) == ("done", "2", "dv1")
    view = ledger.batch(batch.id)
    assert (view.status, view.method, view.model_version, view.mlflow_run_id) == ("done", "iau", "2", "run-1")
    assert view.gate == {"val_acc_drop": 0.25, "attack_auc": 0.51, "passed": True, "loss": "nan"}
    assert view.sample_ids == [101, 102, 103] and view.steps == {"unlearn": 0.5}
    assert view.finished_at >= view.started_at
    kinds = [(e.kind, e.sample_id) for e in events_before]
    assert kinds == [("requested", 101), ("claimed", 101), ("gate", None), ("done", 101)]
    gate_event = events_before[2]
    assert gate_event.batch_id == batch.id and gate_event.detail["attack_auc"] == 0.51
    assert ledger.current_champion().model_version == "2"
    with pytest.raises(LedgerError, match="already done with model version 2"):
        finish(ledger, batch.id, "3", "dv2", "iau", gate, "run-2")  # never two versions for one batch
    assert [b.model_version for b in ledger.batches()] == ["2"]


def test_finish_refuses_without_a_champion_or_with_a_version_already_promoted(ledger):
    ledger.add_requests([101], "gdpr", "normal", D)
    batch = ledger.open_batch("1", "dv0")
    with pytest.raises(LedgerError, match="no champion is recorded"):
        finish(ledger, batch.id, "2", "dv1", "iau", {}, None)
    ledger.record_champion("1", data_version="dv0", train_size=100)
    with pytest.raises(LedgerError, match="model version 1 is already a recorded champion"):
        finish(ledger, batch.id, "1", "dv1", "iau", {}, None)
    assert ledger.list_requests()[0].status == "processing" and ledger.batch(batch.id).status == "running"
    with pytest.raises(LedgerError, match="method 'SGD!' is not a method name"):  # any rung of nightly.ladder
        finish(ledger, batch.id, "2", "dv1", "SGD!", {}, None)
    with pytest.raises(LedgerError, match="no batch with id 99"):
        finish(ledger, 99, "2", "dv1", "iau", {}, None)


def test_escalate_turns_the_batch_into_a_retrain(ledger):
    batch = champion_and_batch(ledger)
    ledger.escalate(batch.id, "gate failed: val_acc_drop 3.1 > 1.0")
    ledger.escalate(batch.id, "gate failed: val_acc_drop 3.1 > 1.0")  # repeated on resume: no-op
    assert {v.status for v in ledger.list_requests()} == {"escalated"}
    assert ledger.list_requests()[0].escalation_reason.startswith("gate failed")
    resumed = ledger.open_batch("1", "dv0")
    assert resumed.resumed and resumed.method == "retrain" and resumed.escalation_reason.startswith("gate failed")
    with pytest.raises(LedgerError, match="was escalated to retrain"):
        finish(ledger, batch.id, "2", "dv1", "iau", {}, None)
    finish(ledger, batch.id, "2", "dv1", "retrain", {"val_acc_drop": 0.2}, "run-1")
    assert {v.status for v in ledger.list_requests()} == {"done"}
    kinds = [e.kind for e in ledger.history(102)[1]]
    assert kinds == ["requested", "claimed", "escalated", "gate", "done"]
    with pytest.raises(LedgerError, match="cannot escalate: batch 1 is already done"):
        ledger.escalate(batch.id, "too late")  # done batches are not escalated after the fact


def test_release_puts_requests_back_to_pending_for_the_next_batch(ledger):
    batch = champion_and_batch(ledger, ids=(101, 102))
    ledger.escalate(batch.id, "high tier")
    ledger.release_batch(batch.id, "MLflow tracking server unreachable")
    ledger.release_batch(batch.id, "MLflow tracking server unreachable")  # repeated: no-op
    pending = ledger.list_requests("pending")
    assert [v.sample_id for v in pending] == [101, 102]
    assert all(v.batch_id is None and v.escalation_reason is None for v in pending)
    failed = ledger.batch(batch.id)
    assert failed.status == "failed" and failed.error.startswith("MLflow") and failed.sample_ids == [101, 102]
    retry = ledger.open_batch("1", "dv0")
    assert retry.id != batch.id and not retry.resumed and retry.sample_ids == [101, 102]
    assert retry.method == "iau"  # a fresh batch decides its method again
    kinds = [(e.kind, e.batch_id) for e in ledger.history(101)[1]]
    assert kinds == [("requested", None), ("claimed", batch.id), ("escalated", batch.id),
                     ("released", batch.id), ("claimed", retry.id)]
    finish(ledger, retry.id, "2", "dv1", "iau", {}, None)
    with pytest.raises(LedgerError, match="cannot release: batch 2 is already done"):
        ledger.release_batch(retry.id, "late failure")
    assert ledger.forgotten_ids() == [101, 102]


def test_drift_counters_grow_with_iau_and_restart_with_a_retrain(ledger):
    assert ledger.current_champion() is None
    ledger.record_champion("1", data_version="dv0", train_size=100)
    ledger.record_champion("1", data_version="dv0", train_size=100)  # repeated: no-op
    with pytest.raises(LedgerError, match="already recorded as a champion"):
        ledger.record_champion("1", data_version="dv0", train_size=90)
    expected = []
    for version, ids, method in (("2", [101, 102, 103], "iau"), ("3", [104, 105], "iau"),
                                 ("4", [106, 107, 108, 109], "retrain"), ("5", [110], "iau")):
        ledger.add_requests(ids, "gdpr", "normal", D)
        batch = ledger.open_batch(ledger.current_champion().model_version, "dv")
        if method == "retrain":
            ledger.escalate(batch.id, "drift limit")
        finish(ledger, batch.id, version, f"dv{version}", method, {}, None)
        champion = ledger.current_champion()
        expected.append((champion.model_version, champion.method, champion.batch_id))
        if version == "2":
            assert (champion.iau_batches_since_retrain, champion.forgotten_since_retrain,
                    champion.train_size_at_retrain) == (1, 3, 100)
        if version == "3":
            assert (champion.iau_batches_since_retrain, champion.forgotten_since_retrain) == (2, 5)
            assert champion.forgotten_share == pytest.approx(0.05)
        if version == "4":  # retrained on what was left: 100 - 5 - 4
            assert (champion.iau_batches_since_retrain, champion.forgotten_since_retrain,
                    champion.train_size_at_retrain) == (0, 0, 91)
    assert (champion.iau_batches_since_retrain, champion.forgotten_since_retrain,
            champion.train_size_at_retrain) == (1, 1, 91)
    assert [m for _, m, _ in expected] == ["iau", "iau", "retrain", "iau"]
    ledger.record_champion("6", data_version="dv6", train_size=89, method="train")  # `iau train` again
    champion = ledger.current_champion()
    assert (champion.iau_batches_since_retrain, champion.forgotten_since_retrain,
            champion.train_size_at_retrain, champion.batch_id) == (0, 0, 89, None)
    with pytest.raises(LedgerError, match="full trainings"):
        ledger.record_champion("7", data_version="dv7", train_size=89, method="iau")


def test_record_step_keeps_the_last_time_of_each_step(ledger):
    batch = champion_and_batch(ledger)
    ledger.record_step(batch.id, "unlearn", 1.0)
    ledger.record_step(batch.id, "gate", 2.0)
    ledger.record_step(batch.id, "unlearn", 1.5)
    assert ledger.batch(batch.id).steps == {"unlearn": 1.5, "gate": 2.0}
    with pytest.raises(LedgerError, match="finite seconds"):
        ledger.record_step(batch.id, "unlearn", float("nan"))


# --- the nightly lock ---------------------------------------------------------------------------------------------


def test_a_second_holder_is_refused_until_the_first_lets_go(ledger, url):
    with ledger.nightly_lock("flow run A"):
        with Ledger(url) as other, pytest.raises(LockHeld) as caught:
            with other.nightly_lock("flow run B"):
                pass
        message = str(caught.value)
        assert f"pid {os.getpid()} on {this_host()}" in message and "'flow run A'" in message
        assert "still running" in message
    with ledger.nightly_lock("flow run B"):  # released when the block ended
        pass


def test_a_lock_from_another_host_is_refused(ledger):
    with ledger.engine.begin() as connection:
        connection.execute(LockRow.__table__.insert().values(
            name="nightly", owner="flow run on gpu-7", pid=1, host="gpu-7", acquired_at=datetime.now(UTC)))
    with pytest.raises(LockHeld, match="on another host"):
        with ledger.nightly_lock("me"):
            pass


def test_a_lock_whose_pid_now_belongs_to_a_younger_process_is_stale(ledger, caplog):
    with ledger.engine.begin() as connection:  # our pid, but taken before this process started: pid reuse
        connection.execute(LockRow.__table__.insert().values(
            name="nightly", owner="crashed run", pid=os.getpid(), host=this_host(),
            acquired_at=datetime.now(UTC) - timedelta(days=30)))
    with caplog.at_level(logging.WARNING, logger="ledger.batches"), ledger.nightly_lock("me"):
        assert "taking over the nightly lock" in caplog.text


def test_the_lock_of_a_killed_process_is_taken_over(ledger, url, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from ledger import Ledger
            with Ledger({url!r}).nightly_lock("doomed run"):
                print("held", flush=True)
                time.sleep(120)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            with ledger.nightly_lock("me"):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the row stays behind
        holder.wait()
    with ledger.engine.connect() as connection:
        assert connection.execute(select(LockRow.pid)).scalar_one() == holder.pid
    with caplog.at_level(logging.WARNING, logger="ledger.batches"), ledger.nightly_lock("me"):
        assert f"pid {holder.pid}" in caplog.text and "no longer running" in caplog.text
    with ledger.engine.connect() as connection:
        assert connection.execute(select(LockRow)).first() is None  # and ours went away on exit


def test_a_lock_released_by_someone_else_is_not_deleted_from_under_the_new_holder(ledger):
    with ledger.nightly_lock("A"):
        with ledger.engine.begin() as connection:  # as if an operator removed it and another run took it
            connection.execute(update(LockRow).values(owner="B", acquired_at=datetime.now(UTC) + timedelta(1)))
    with ledger.engine.connect() as connection:
        assert connection.execute(select(LockRow.owner)).scalar_one() == "B"
