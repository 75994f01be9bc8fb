"""The ledger's schema and its intake of deletion requests, on SQLite and on a real PostgreSQL server: opening
migrates to head and the models match the migrations, the URL (where it comes from, its password masked), adding
requests (each id once, tiers raised never lowered, every bad id refused at once and nothing written), listing and
history, and cancelling a pending request. The batch life cycle and the nightly lock are in test_ledger_batches.py;
the fixtures both share are tests/ledger_fixtures.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ledger import Ledger, RequestError, default_ledger_url, ledger_url
from ledger.migrate import head_revision
from ledger.models import Base
from sandbox.postgres import create_database
from tests.ledger_calls import finish
from tests.ledger_fixtures import (  # noqa: F401 (fixtures: pytest finds them here by name)
    D,
    champion_and_batch,
    ledger_fixture,
    new_database_name,
    postgres_server_fixture,
    url_fixture,
)

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
    with Ledger(create_database(secret, new_database_name())) as ledger:
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


# --- cancelling ---------------------------------------------------------------------------------------------------


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
