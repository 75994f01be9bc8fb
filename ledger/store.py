"""The deletion-request ledger: what was asked to be forgotten, and what each nightly batch did about it.

Every public method is one database transaction, so a process killed at any point leaves the ledger as it was
before the call or after it, never between. The calls the nightly flow repeats when it resumes after a crash
(open_batch, escalate, finish_batch, release_batch, record_step, record_champion) are idempotent.

Life of a request: pending --open_batch--> processing [--escalate--> escalated] [--keep_champion-->]
--finish_batch--> done, or back to pending by release_batch (a clean failure before promotion). Each step appends
to `events`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from ledger.batches import Batches
from ledger.migrate import make_engine, masked, upgrade_to_head
from ledger.purges import ModelPurges
from ledger.requests import Requests

log = logging.getLogger(__name__)

URL_ENV = "IAU_LEDGER_URL"


def ledger_url(project_root: Path) -> str:
    """$IAU_LEDGER_URL, else the project's own ledger (default_ledger_url): what an entry point reads, once."""
    return os.environ.get(URL_ENV) or default_ledger_url(project_root)


def default_ledger_url(project_root: Path) -> str:
    """The SQLite file ledger.db in the project folder."""
    return f"sqlite:///{Path(project_root).resolve() / 'ledger.db'}"


class Ledger(Requests, Batches, ModelPurges):
    """The ledger in one database; opening it brings the schema to the newest migration."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.engine = make_engine(self._url)
        upgrade_to_head(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        log.info("ledger at %s", self.url_for_display)

    @property
    def url_for_display(self) -> str:
        return masked(self._url)

    def __repr__(self) -> str:
        return f"Ledger({self.url_for_display!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

