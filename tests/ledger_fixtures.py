"""What the ledger's test modules share (not a test module): the ledger on SQLite and on a throwaway PostgreSQL
server (every `ledger` test runs on both), the training ids the requests name, and a first champion with the batch
that claimed its requests. Used by test_ledger.py and test_ledger_batches.py, which import the fixtures by their
`*_fixture` names (pytest knows them by `name=`, so a test's argument never shadows the import). pytest keeps one
instance of a session fixture per module that imports it: the PostgreSQL server starts once for each of the two
modules (a second or two), not once per test."""

from __future__ import annotations

import itertools

import pytest

from ledger import Ledger
from sandbox.postgres import Unavailable, create_database, running_postgres

D = set(range(100, 200))  # the training ids of these tests
_names = itertools.count()


def new_database_name() -> str:
    """A database name no other test of this process used (each test gets an empty ledger)."""
    return f"ledger_{next(_names)}"


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture():
    try:
        with running_postgres() as url:
            yield url
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"], name="url")
def url_fixture(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return create_database(request.getfixturevalue("postgres_server"), new_database_name())


@pytest.fixture(name="ledger")
def ledger_fixture(url):
    with Ledger(url) as opened:
        yield opened


def champion_and_batch(ledger: Ledger, ids=(101, 102, 103), train_size=100):
    """A first champion, requests for `ids`, and the batch that claimed them."""
    ledger.record_champion("1", data_version="dv0", train_size=train_size)
    ledger.add_requests(list(ids), "gdpr art. 17", "normal", D)
    return ledger.open_batch("1", "dv0")
