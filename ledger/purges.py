"""The model purges' side of the ledger: a purge's plan before anything is removed, its report and the receipts it
is given (a mixin of ledger.Ledger)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.common import plain_json, rows_by_id
from ledger.errors import LedgerError
from ledger.models import EventRow, ModelPurgeRow, utcnow
from ledger.views import ModelPurgeView


class ModelPurges:
    """Model purges: every method one transaction (Ledger._transaction)."""
    _transaction: Callable[[], AbstractContextManager[Session]]  # Ledger's: one call, one transaction

    def plan_model_purge(self, plan: dict[str, Any]) -> ModelPurgeView:
        """Record a model purge's plan before anything is removed; refused while another one is unfinished."""
        with self._transaction() as session:
            open_ = session.scalars(select(ModelPurgeRow).where(ModelPurgeRow.status == "planned")).first()
            if open_ is not None:
                raise LedgerError(f"model purge {open_.id} is unfinished: finish it first")
            row = ModelPurgeRow(status="planned", started_at=utcnow(), plan=plain_json(plan), cleared_data_versions=[])
            session.add(row)
            session.flush()
            return _model_purge_view(row)

    def unfinished_model_purge(self) -> ModelPurgeView | None:
        """The purge a killed run left planned, if any (the next run finishes it before planning a new one)."""
        with self._transaction() as session:
            row = session.scalars(select(ModelPurgeRow).where(ModelPurgeRow.status == "planned")).first()
            return None if row is None else _model_purge_view(row)

    def finish_model_purge(self, purge_id: int, report: dict[str, Any], cleared_data_versions: list[str],
                           receipts: Collection[int]) -> list[int]:
        """The purge is done: record what it removed and could not, and give the done requests in `receipts` (the
        rule that picks them is ops/purge.py's) this purge as their receipt. Returns the sample ids that got it now
        (a request that has one keeps it); idempotent."""
        with self._transaction() as session:
            row = session.get(ModelPurgeRow, purge_id, with_for_update=True)
            if row is None:
                raise LedgerError(f"no model purge with id {purge_id}")
            if row.status == "done":
                return []
            now = utcnow()
            row.status, row.finished_at, row.report = "done", now, plain_json(report)
            row.cleared_data_versions = sorted(set(cleared_data_versions))
            given = []
            for request in rows_by_id(session, sorted(set(receipts))):
                if request.status != "done" or request.model_purge_id is not None:
                    continue
                request.model_purge_id, request.updated_at = purge_id, now
                session.add(EventRow(sample_id=request.sample_id, batch_id=request.batch_id, at=now,
                                     kind="weights-purged", detail={"model_purge": purge_id}))
                given.append(request.sample_id)
            return sorted(given)

    def cleared_data_versions(self) -> set[str]:
        """Every data version a finished model purge left without weights."""
        with self._transaction() as session:
            return {v for done in session.scalars(select(ModelPurgeRow.cleared_data_versions)
                                                  .where(ModelPurgeRow.status == "done")) for v in done}

    def model_purge(self, purge_id: int) -> ModelPurgeView:
        with self._transaction() as session:
            row = session.get(ModelPurgeRow, purge_id)
            if row is None:
                raise LedgerError(f"no model purge with id {purge_id}")
            return _model_purge_view(row)


def _model_purge_view(row: ModelPurgeRow) -> ModelPurgeView:
    return ModelPurgeView(id=row.id, status=row.status, started_at=row.started_at, finished_at=row.finished_at,
                          plan=row.plan, report=row.report, cleared_data_versions=list(row.cleared_data_versions))
