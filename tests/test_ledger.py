"""The ledger on SQLite and on a real PostgreSQL server: intake, the batch life cycle, locks, champions."""

from __future__ import annotations

import itertools
import logging
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, update

from ledger import Ledger, LedgerError, LockHeld, RequestError, default_ledger_url, ledger_url
from ledger.liveness import this_host
from ledger.migrate import head_revision
from ledger.models import Base, LockRow
from sandbox.postgres import Unavailable, create_database, running_postgres
from tests.ledger_calls import finish

D = set(range(100, 200))  # the training ids of these tests
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    try:
        with running_postgres() as url:
            yield url
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return create_database(request.getfixturevalue("postgres_server"), f"ledger_{next(_names)}")


@pytest.fixture
def ledger(url):
    with Ledger(url) as opened:
        yield opened


def champion_and_batch(ledger: Ledger, ids=(101, 102, 103), train_size=100):
    """A first champion, requests for `ids`, and the batch that claimed them."""
    ledger.record_champion("1", data_version="dv0", train_size=train_size)
    ledger.add_requests(list(ids), "gdpr art. 17", "normal", D)
    return ledger.open_batch("1", "dv0")


# --- schema -------------------------------------------------------------------------------------------------------


def test_opening_migrates_to_head_and_the_models_match_the_migrations(url):
    Ledger(url).close()
    with Ledger(url) as ledger:  # a second open finds the schema at head and changes nothing
        with ledger.engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) >= {
                "deletion_requests", "batches", "events", "champions", "locks", "alembic_version"}
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert context.get_current_revision() == head_revision()
            assert compare_metadata(context, Base.metadata) == []  # a model changed without a migration fails


def test_url_is_shown_with_its_password_masked(postgres_server):
    secret = postgres_server.replace("postgres@", "postgres:s3cr%40t@")  # trust auth: any password is accepted
    with Ledger(create_database(secret, f"ledger_{next(_names)}")) as ledger:
        assert "s3cr" not in ledger.url_for_display and "s3cr" not in repr(ledger)
        assert "***" in ledger.url_for_display and ledger.list_requests() == []


def test_the_url_comes_from_the_environment_else_the_project_root(tmp_path, monkeypatch):
    monkeypatch.setenv("IAU_LEDGER_URL", "sqlite:////elsewhere/l.db")
    assert ledger_url(tmp_path) == "sqlite:////elsewhere/l.db"
    assert default_ledger_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/ledger.db"  # what ops opens by default
    monkeypatch.delenv("IAU_LEDGER_URL")
    assert ledger_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/ledger.db"


# --- intake -------------------------------------------------------------------------------------------------------


def test_add_queues_each_id_once_and_reports_pending_ones(ledger):
    before = datetime.now(UTC)
    first = ledger.add_requests([105, 101, 105, np.int64(103)], "gdpr", "normal", D)
    assert first.added == [105, 101, 103] and first.already_pending == []
    again = ledger.add_requests([101, 104], "other reason", "normal", D)
    assert again.added == [104] and again.already_pending == [101] and again.raised == []
    views = {v.sample_id: v for v in ledger.list_requests()}
    assert set(views) == {101, 103, 104, 105}
    assert views[101].reason == "gdpr" and views[101].tier == "normal"  # re-adding changed nothing
    assert views[104].tier == "normal" and views[104].status == "pending" and views[104].batch_id is None
    stamp = views[104].requested_at
    assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= stamp <= datetime.now(UTC) + timedelta(seconds=5)
    _, events = ledger.history(101)
    assert [e.kind for e in events] == ["requested"]  # one event: the no-op re-add wrote nothing


def test_a_higher_tier_on_re_add_raises_it_and_a_lower_one_never_lowers_it(ledger):
    ledger.add_requests([101, 102], "gdpr", "normal", D)
    raised = ledger.add_requests([101], "poisoned", "high", D)
    assert raised.added == [] and raised.already_pending == [] and raised.raised == [101]
    assert ledger.add_requests([101], "again", "normal", D).already_pending == [101]
    views = {v.sample_id: v for v in ledger.list_requests()}
    assert views[101].tier == "high" and views[101].reason == "gdpr" and views[102].tier == "normal"
    _, events = ledger.history(101)
    assert [e.kind for e in events] == ["requested", "tier-raised"]
    assert events[1].detail == {"from": "normal", "to": "high", "reason": "poisoned"}


def test_ids_outside_64_bits_are_refused_not_overflowed(ledger):
    with pytest.raises(RequestError, match=r"integers in 0\.\.2\^63-1, got 9223372036854775808"):
        ledger.add_requests([2**63], "gdpr", "normal", D)
    with pytest.raises(RequestError, match="out of range"):
        ledger.history(2**66)
    assert ledger.list_requests() == []


def test_a_call_with_one_bad_id_writes_nothing(ledger):
    with pytest.raises(RequestError, match=r"not in the current training data: 999\b") as caught:
        ledger.add_requests([101, 102, 999], "gdpr", "normal", D)
    assert "nothing was written" in str(caught.value)
    assert ledger.list_requests() == []


def test_every_refusal_is_named_at_once(ledger):
    batch = champion_and_batch(ledger, ids=(101,))
    finish(ledger, batch.id, "2", "dv1", "iau", {"val_acc_drop": 0.1}, "run-1")
    ledger.add_requests([102], "gdpr", "normal", D)
    ledger.open_batch("2", "dv1")
    with pytest.raises(RequestError) as caught:
        ledger.add_requests([101, 102, 103, 7, -4, "x"], "  ", "urgent", D - {101})
    message = str(caught.value)
    assert "-4" in message and "'x'" in message  # malformed ids
    assert "reason is empty" in message and "'urgent'" in message
    assert "already forgotten: 101 (model version 2, batch 1)" in message  # forgotten, not merely 'unknown'
    assert "being forgotten now: 102 (processing in batch 2)" in message
    assert "not in the current training data: 7" in message
    assert [v.sample_id for v in ledger.list_requests("pending")] == []  # 103 was not queued


def test_list_filters_by_status_and_refuses_an_unknown_one(ledger):
    champion_and_batch(ledger, ids=(101, 102))
    ledger.add_requests([103], "gdpr", "high", D)
    assert [v.sample_id for v in ledger.list_requests("processing")] == [101, 102]
    assert [v.sample_id for v in ledger.list_requests("pending")] == [103]
    assert len(ledger.list_requests()) == 3
    with pytest.raises(RequestError, match="'waiting' is not one of pending, processing, done, escalated, cancelled"):
        ledger.list_requests("waiting")
    record = ledger.list_requests("pending")[0].as_json()
    assert record["requested_at"].endswith("+00:00") and datetime.fromisoformat(record["requested_at"])
    assert {"sample_id", "status", "reason", "tier", "requested_at", "batch_id", "model_version",
            "data_version"} <= set(record)


def test_history_of_an_unknown_id_is_refused(ledger):
    with pytest.raises(RequestError, match="no deletion request for sample_id 5"):
        ledger.history(5)


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


def test_a_pending_request_can_be_cancelled_and_asked_for_again(ledger):
    """`iau requests cancel`: pending requests are withdrawn all or nothing, with an event saying why; a claimed,
    finished, unknown or already cancelled one refuses the call; asking again revives the request as pending."""
    ledger.add_requests([101, 102, 103], "gdpr art. 17", "normal", D)
    assert ledger.cancel_requests([101, 102], "asked by mistake") == [101, 102]
    by_id = {r.sample_id: r.status for r in ledger.list_requests()}
    assert by_id == {101: "cancelled", 102: "cancelled", 103: "pending"}
    assert [e.kind for e in ledger.history(101)[1]][-1] == "cancelled"
    for ids, reason, message in (([101], "again", "not pending, so not cancellable: 101 (cancelled)"),
                                 ([103, 999], "x", "no deletion request for 999"),
                                 ([103], "  ", "the reason is empty")):
        with pytest.raises(RequestError, match=re.escape(message)):
            ledger.cancel_requests(ids, reason)
    assert {r.sample_id: r.status for r in ledger.list_requests()}[103] == "pending"  # nothing was written
    ledger.record_champion("1", data_version="dv0", train_size=100)
    batch = ledger.open_batch("1", "dv0")
    assert batch.sample_ids == [103]  # a batch claims pending requests only
    with pytest.raises(RequestError, match=r"103 \(processing\)"):
        ledger.cancel_requests([103], "too late")
    again = ledger.add_requests([101], "asked again", "high", D)
    assert again.added == [101]
    revived = {r.sample_id: r for r in ledger.list_requests()}[101]
    assert (revived.status, revived.tier, revived.reason) == ("pending", "high", "asked again")
    assert [e.kind for e in ledger.history(101)[1]] == ["requested", "cancelled", "requested"]
