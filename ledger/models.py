"""The ledger's tables as SQLAlchemy 2 ORM models.

The schema itself is owned by the Alembic migrations in `ledger/migrations/versions/`; these models must describe
the same tables (tests/test_ledger.py compares them with autogenerate, so a model changed without a migration
fails). The allowed values of each status column live here once, as tuples, and become CHECK constraints.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

REQUEST_STATUSES = ("pending", "processing", "done", "escalated", "cancelled")
TIERS = ("normal", "high")
BATCH_STATUSES = ("running", "done", "failed")
# A batch's method is a rung of nightly.ladder (a method of the unlearning registry, or retrain); a champion's is
# also `train`. The names are validated with the params; the ledger only checks their shape (store.method_name).
METHOD_NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")
MODEL_PURGE_STATUSES = ("planned", "done")

# Stable constraint names, so later migrations (and SQLite's batch mode) can address them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL for `column IN (values)`: the CHECK constraint that keeps a status column to its allowed names."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and tz-aware in Python.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as naive UTC and given its
    zone back on the way out. A naive datetime handed in is refused: its zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the ledger stores tz-aware UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class RequestRow(Base):
    """One request to forget one record; sample_id is unique: a record is asked for (and forgotten) once."""

    __tablename__ = "deletion_requests"
    __table_args__ = (
        CheckConstraint(one_of("status", REQUEST_STATUSES), name="status"),
        CheckConstraint(one_of("tier", TIERS), name="tier"),
        Index("ix_deletion_requests_status", "status"),
        Index("ix_deletion_requests_batch_id", "batch_id"),
    )

    sample_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    tier: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    model_version: Mapped[str | None] = mapped_column(String(64))  # the registered version that first excludes it
    data_version: Mapped[str | None] = mapped_column(String(64))
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    # the model purge that removed the last weights trained on a data version still holding the record (receipt)
    model_purge_id: Mapped[int | None] = mapped_column(ForeignKey("model_purges.id"))


class BatchRow(Base):
    """One nightly run over the requests it claimed: from the parent champion to the model that forgets them."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(one_of("status", BATCH_STATUSES), name="status"),
        Index("ix_batches_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    parent_model_version: Mapped[str] = mapped_column(String(64))
    parent_data_version: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    data_version: Mapped[str | None] = mapped_column(String(64))
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    gate: Mapped[dict[str, Any] | None]
    steps: Mapped[dict[str, Any]]  # step name -> seconds
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)


class EventRow(Base):
    """The append-only history: what happened to a request (sample_id set) or to a whole batch (sample_id null)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_sample_id", "sample_id"),
        Index("ix_events_batch_id", "batch_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int | None] = mapped_column(BigInteger)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]]


class ChampionRow(Base):
    """Each model that took the `champion` alias, with the counters the drift limit reads."""

    __tablename__ = "champions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), unique=True)
    method: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    data_version: Mapped[str] = mapped_column(String(64))
    promoted_at: Mapped[datetime]
    iau_batches_since_retrain: Mapped[int] = mapped_column(Integer)
    forgotten_since_retrain: Mapped[int] = mapped_column(Integer)
    train_size_at_retrain: Mapped[int] = mapped_column(Integer)


class ModelPurgeRow(Base):
    """One purge of model weights that saw forgotten records: its plan (written before any removal, so the next
    run finishes a killed one), what it removed and could not, and the data versions it left without weights."""

    __tablename__ = "model_purges"
    __table_args__ = (CheckConstraint(one_of("status", MODEL_PURGE_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    plan: Mapped[dict[str, Any]]
    report: Mapped[dict[str, Any] | None]
    cleared_data_versions: Mapped[list[str]] = mapped_column(JSON)


class LockRow(Base):
    """A named lock held by one process (the nightly batch): who, where, since when."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime]
