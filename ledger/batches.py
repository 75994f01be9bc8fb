"""The nightly batches' side of the ledger: the lock, claiming, escalating, finishing or releasing a batch, and the
champions each full training or batch leaves (a mixin of ledger.Ledger). Every call a resumed batch repeats is
idempotent."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from operator import index
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.common import method_name, plain_json
from ledger.errors import LedgerError, LockHeld
from ledger.liveness import holder_alive, this_host
from ledger.models import BatchRow, ChampionRow, EventRow, LockRow, RequestRow, utcnow
from ledger.views import Batch, BatchView, ChampionView, DriftCounters

# What an escalated batch may finish with: a model that never saw the records, retrained from scratch or by `sisa`
# (its affected shards retrained; iau_core.deletion.is_exact). Names only: the ledger imports no method code.
EXACT_FINISHERS = ("retrain", "sisa")

log = logging.getLogger(__name__)
NIGHTLY_LOCK = "nightly"


class Batches:
    """The nightly batch and the champions: every method one transaction (Ledger._transaction)."""
    _transaction: Callable[[], AbstractContextManager[Session]]  # Ledger's: one call, one transaction

    @contextmanager
    def nightly_lock(self, owner: str) -> Iterator[None]:
        """Hold the nightly lock for the block: one batch at a time, across processes and hosts.

        A holder that is alive makes this raise LockHeld. A holder on this host whose process is gone (killed,
        crashed) is stale: its lock is taken over and a warning logged.
        """
        mine = self._acquire(NIGHTLY_LOCK, owner)
        try:
            yield
        finally:
            with self._transaction() as session:
                session.execute(delete(LockRow).where(
                    LockRow.name == NIGHTLY_LOCK, LockRow.pid == mine.pid, LockRow.host == mine.host,
                    LockRow.acquired_at == mine.acquired_at))

    def _acquire(self, name: str, owner: str) -> LockRow:
        try:
            with self._transaction() as session:
                held = session.scalars(select(LockRow).where(LockRow.name == name).with_for_update()).first()
                if held is not None:
                    alive = holder_alive(held.pid, held.host, held.acquired_at)
                    if alive is not False:
                        raise _lock_held(held, alive)
                    log.warning("taking over the %s lock: its holder %r (pid %d on %s, since %s) is no longer "
                                "running", name, held.owner, held.pid, held.host, held.acquired_at.isoformat())
                    session.delete(held)
                    session.flush()
                mine = LockRow(name=name, owner=owner, pid=os.getpid(), host=this_host(), acquired_at=utcnow())
                session.add(mine)
            return mine
        except IntegrityError:  # another process inserted its lock between our read and our insert
            with self._transaction() as session:
                held = session.get(LockRow, name)
            raise _lock_held(held, True) if held else LockHeld(f"the {name} lock was just taken") from None

    def open_batch(self, parent_model_version: str, parent_data_version: str,
                   method: str = "iau") -> Batch | None:
        """The batch to work on: the running one (after a crash), else every pending request claimed into a new
        one that starts with `method` (the ladder's first rung); None when nothing is pending."""
        method = method_name(method)
        with self._transaction() as session:
            running = session.scalars(select(BatchRow).where(BatchRow.status == "running")
                                      .order_by(BatchRow.id).with_for_update()).first()
            if running is not None:
                members = session.scalars(select(RequestRow).where(RequestRow.batch_id == running.id)
                                          .order_by(RequestRow.sample_id)).all()
                log.info("resuming batch %d (%d requests), left running by an earlier process",
                         running.id, len(members))
                return _batch(running, members, resumed=True)
            pending = session.scalars(select(RequestRow).where(RequestRow.status == "pending")
                                      .order_by(RequestRow.sample_id).with_for_update()).all()
            if not pending:
                return None
            now = utcnow()
            batch = BatchRow(status="running", method=method, started_at=now, steps={},
                             parent_model_version=parent_model_version, parent_data_version=parent_data_version)
            session.add(batch)
            session.flush()  # gives batch.id
            for row in pending:
                row.status, row.batch_id, row.updated_at = "processing", batch.id, now
                session.add(EventRow(sample_id=row.sample_id, batch_id=batch.id, at=now, kind="claimed",
                                     detail={"parent_model_version": parent_model_version,
                                             "parent_data_version": parent_data_version}))
            return _batch(batch, pending, resumed=False)

    def record_step(self, batch_id: int, step: str, seconds: float) -> None:
        """Record how long a step of the batch took (a repeat overwrites: the last run of the step counts)."""
        seconds = float(seconds)
        if not step or not math.isfinite(seconds) or seconds < 0:
            raise LedgerError(f"record_step needs a step name and finite seconds >= 0, got {step!r}, {seconds!r}")
        with self._transaction() as session:
            batch = _batch_row(session, batch_id)
            batch.steps = {**batch.steps, step: seconds}

    def escalate(self, batch_id: int, reason: str) -> None:
        """The batch will be retrained instead of unlearned approximately (every cheaper rung of the ladder was
        rejected by the gate, a high tier, a drift limit)."""
        if not reason or not reason.strip():
            raise LedgerError("escalate needs a reason")
        with self._transaction() as session:
            batch = _batch_row(session, batch_id)
            _require_running(batch, "escalate")
            if batch.method == "retrain":
                return  # already escalated: a resumed run repeating itself
            now = utcnow()
            batch.method, batch.escalation_reason = "retrain", reason
            for row in session.scalars(select(RequestRow).where(RequestRow.batch_id == batch_id)):
                row.status, row.escalation_reason, row.updated_at = "escalated", reason, now
                session.add(EventRow(sample_id=row.sample_id, batch_id=batch_id, at=now, kind="escalated",
                                     detail={"reason": reason}))

    def keep_champion(self, batch_id: int, model_version: str, method: str, gate: dict[str, Any]) -> None:
        """The batch's accepted candidate is the champion unchanged (its step changed nothing): no new version is
        registered, and the batch will finish on the champion `model_version`. Recorded before the data forgets
        the records, so a rerun after a kill goes on from there and a failure no longer releases the requests
        (a running batch with a model version has passed its point of no return). Idempotent."""
        method = method_name(method)
        with self._transaction() as session:
            batch = _batch_row(session, batch_id)
            _require_running(batch, "keep the champion")
            if batch.model_version is not None:
                if batch.model_version != model_version:
                    raise LedgerError(f"batch {batch_id} keeps model version {batch.model_version} already")
                return
            parent = _current_champion(session)
            if parent is None or parent.model_version != model_version:
                raise LedgerError(f"model version {model_version} is not the recorded champion")
            batch.model_version, batch.method, batch.gate = model_version, method, plain_json(gate)
            session.add(EventRow(batch_id=batch_id, at=utcnow(), kind="unchanged",
                                 detail={"model_version": model_version, "method": method}))

    def finish_batch(self, batch_id: int, model_version: str, data_version: str, method: str,
                     gate: dict[str, Any], mlflow_run_id: str | None, drift: DriftCounters) -> None:
        """The batch's model passed the gate and took the champion alias: its requests are done.

        Writes the gate, marks every request done with the version that first excludes it, and records the new
        champion with the drift counters it is given (ops/drift.py computes them). A batch that kept the champion
        (keep_champion) finishes on it instead: the champion serves the new data version with the given counters.
        Repeating it for a batch already done with this model version is a no-op.
        """
        method = method_name(method)
        with self._transaction() as session:
            batch = _batch_row(session, batch_id)
            if batch.status == "done" and batch.model_version == model_version:
                return
            _require_running(batch, f"finish with model version {model_version}")
            if batch.method == "retrain" and method not in EXACT_FINISHERS:
                raise LedgerError(f"batch {batch_id} was escalated to retrain ({batch.escalation_reason}); "
                                  f"it cannot finish with method {method!r}")
            kept = batch.model_version is not None
            if kept and batch.model_version != model_version:
                raise LedgerError(f"batch {batch_id} keeps the champion {batch.model_version}; it cannot finish "
                                  f"with model version {model_version}")
            parent = _current_champion(session)
            if parent is None:
                raise LedgerError("no champion is recorded: the first one comes from `iau train` (record_champion)")
            if not kept and session.scalars(select(ChampionRow).where(ChampionRow.model_version == model_version)
                                            .limit(1)).first():
                raise LedgerError(f"model version {model_version} is already a recorded champion; "
                                  "each batch promotes a new version")
            now, gate = utcnow(), plain_json(gate)
            members = session.scalars(select(RequestRow).where(RequestRow.batch_id == batch_id)).all()
            for row in members:
                row.status, row.model_version, row.data_version, row.updated_at = "done", model_version, \
                    data_version, now
            batch.status, batch.method, batch.finished_at = "done", method, now
            batch.model_version, batch.data_version = model_version, data_version
            batch.gate, batch.mlflow_run_id = gate, mlflow_run_id
            session.add(EventRow(batch_id=batch_id, at=now, kind="gate", detail=gate))
            session.add_all(EventRow(sample_id=row.sample_id, batch_id=batch_id, at=now, kind="done",
                                     detail={"model_version": model_version, "data_version": data_version,
                                             "method": method, "mlflow_run_id": mlflow_run_id,
                                             **({"unchanged": True} if kept else {})})
                            for row in members)
            counters = _checked_counters(drift)
            if kept:  # the same weights now serve the smaller D
                parent.data_version = data_version
                (parent.iau_batches_since_retrain, parent.forgotten_since_retrain,
                 parent.train_size_at_retrain) = counters
                return
            session.add(_champion_row(model_version, method, batch_id, data_version, now, *counters))

    def release_batch(self, batch_id: int, error: str) -> None:
        """A clean failure before promotion: the batch failed, its requests are pending again for the next run."""
        with self._transaction() as session:
            batch = _batch_row(session, batch_id)
            if batch.status == "failed":
                return
            _require_running(batch, "release")
            now = utcnow()
            batch.status, batch.error, batch.finished_at = "failed", error, now
            for row in session.scalars(select(RequestRow).where(RequestRow.batch_id == batch_id)):
                row.status, row.batch_id, row.escalation_reason, row.updated_at = "pending", None, None, now
                session.add(EventRow(sample_id=row.sample_id, batch_id=batch_id, at=now, kind="released",
                                     detail={"error": error}))

    def batch(self, batch_id: int) -> BatchView:
        with self._transaction() as session:
            return _batch_view(session, _batch_row(session, batch_id))

    def batches(self) -> list[BatchView]:
        with self._transaction() as session:
            return [_batch_view(session, b) for b in session.scalars(select(BatchRow).order_by(BatchRow.id))]


    def record_champion(self, model_version: str, data_version: str, train_size: int, method: str = "train") -> None:
        """A model trained in full on `train_size` records took the champion alias (`iau train`): counters restart.

        Champions made by a batch are recorded by finish_batch. Repeating the same call is a no-op.
        """
        if method not in ("train", "retrain"):
            raise LedgerError(f"record_champion is for full trainings (train, retrain), got method {method!r}")
        if index(train_size) <= 0:
            raise LedgerError(f"train_size must be positive, got {train_size}")
        with self._transaction() as session:
            same = session.scalars(select(ChampionRow).where(ChampionRow.model_version == model_version)).first()
            if same is not None:
                if (same.method, same.data_version, same.train_size_at_retrain) != (method, data_version, train_size):
                    raise LedgerError(f"model version {model_version} is already recorded as a champion with "
                                      f"method {same.method}, data version {same.data_version}, "
                                      f"train size {same.train_size_at_retrain}")
                return
            session.add(_champion_row(model_version, method, None, data_version, utcnow(), 0, 0, train_size))

    def current_champion(self) -> ChampionView | None:
        with self._transaction() as session:
            row = _current_champion(session)
            return None if row is None else _champion_view(row)


def _lock_held(held: LockRow, alive: bool | None) -> LockHeld:
    why = "still running" if alive else "on another host, so this host cannot tell whether it still runs"
    return LockHeld(f"the {held.name} lock is held by {held.owner!r} (pid {held.pid} on {held.host}, since "
                    f"{held.acquired_at.isoformat()}), {why}. If that process is gone for sure, remove the lock: "
                    f"DELETE FROM locks WHERE name = '{held.name}'")


def _batch_row(session: Session, batch_id: int) -> BatchRow:
    batch = session.get(BatchRow, batch_id, with_for_update=True)
    if batch is None:
        raise LedgerError(f"no batch with id {batch_id}")
    return batch


def _require_running(batch: BatchRow, action: str) -> None:
    if batch.status != "running":
        extra = f" with model version {batch.model_version}" if batch.status == "done" else f": {batch.error}"
        raise LedgerError(f"cannot {action}: batch {batch.id} is already {batch.status}{extra}")


def _checked_counters(drift: DriftCounters) -> tuple[int, int, int]:
    counters = (drift.iau_batches_since_retrain, drift.forgotten_since_retrain, drift.train_size_at_retrain)
    if not all(isinstance(c, int) and c >= 0 for c in counters) or counters[2] <= 0:
        raise LedgerError(f"drift counters must be integers >= 0 with a positive training size, got {drift}")
    return counters


def _current_champion(session: Session) -> ChampionRow | None:
    return session.scalars(select(ChampionRow).order_by(ChampionRow.id.desc()).limit(1)).first()


def _champion_row(model_version: str, method: str, batch_id: int | None, data_version: str, at,
                  iau_batches: int, forgotten: int, train_size: int) -> ChampionRow:
    return ChampionRow(model_version=model_version, method=method, batch_id=batch_id, data_version=data_version,
                       promoted_at=at, iau_batches_since_retrain=iau_batches, forgotten_since_retrain=forgotten,
                       train_size_at_retrain=train_size)


def _batch(row: BatchRow, members: Sequence[RequestRow], resumed: bool) -> Batch:
    return Batch(id=row.id, sample_ids=[r.sample_id for r in members], tiers={r.sample_id: r.tier for r in members},
                 started_at=row.started_at, resumed=resumed, parent_model_version=row.parent_model_version,
                 parent_data_version=row.parent_data_version, method=row.method,
                 escalation_reason=row.escalation_reason)


def _batch_view(session: Session, row: BatchRow) -> BatchView:
    claimed = session.scalars(select(EventRow.sample_id).where(EventRow.batch_id == row.id, EventRow.kind == "claimed")
                              .order_by(EventRow.sample_id))
    return BatchView(id=row.id, status=row.status, method=row.method, started_at=row.started_at,
                     finished_at=row.finished_at, parent_model_version=row.parent_model_version,
                     parent_data_version=row.parent_data_version, model_version=row.model_version,
                     data_version=row.data_version, escalation_reason=row.escalation_reason, gate=row.gate,
                     steps=dict(row.steps), mlflow_run_id=row.mlflow_run_id, error=row.error,
                     sample_ids=list(claimed))


def _champion_view(row: ChampionRow) -> ChampionView:
    return ChampionView(model_version=row.model_version, method=row.method, batch_id=row.batch_id,
                        data_version=row.data_version, promoted_at=row.promoted_at,
                        iau_batches_since_retrain=row.iau_batches_since_retrain,
                        forgotten_since_retrain=row.forgotten_since_retrain,
                        train_size_at_retrain=row.train_size_at_retrain)
