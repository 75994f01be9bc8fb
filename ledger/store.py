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
import math
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from operator import index
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ledger.errors import LedgerError, LockHeld, RequestError
from ledger.liveness import holder_alive, this_host
from ledger.migrate import make_engine, masked, upgrade_to_head
from ledger.models import (
    METHOD_NAME,
    REQUEST_STATUSES,
    TIERS,
    BatchRow,
    ChampionRow,
    EventRow,
    LockRow,
    ModelPurgeRow,
    RequestRow,
    utcnow,
)
from ledger.views import AddResult, Batch, BatchView, ChampionView, EventView, ModelPurgeView, RequestView

log = logging.getLogger(__name__)

URL_ENV = "IAU_LEDGER_URL"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
NIGHTLY_LOCK = "nightly"
IN_PROGRESS = ("processing", "escalated")  # claimed by a batch that has not finished
CHUNK = 500  # ids per IN (...) query: far below every driver's parameter limit
MAX_SAMPLE_ID = 2**63 - 1  # sample_id is a 64-bit signed column; larger ids are refused, not overflowed
MAX_NAMED = 20  # ids named in a refusal; beyond that, a count (a million unknown ids make one short line)


def ledger_url(project_root: Path | None = None) -> str:
    """$IAU_LEDGER_URL, else the SQLite file ledger.db at the project root."""
    return os.environ.get(URL_ENV) or f"sqlite:///{(project_root or PROJECT_ROOT).resolve() / 'ledger.db'}"


class Ledger:
    """The ledger in one database; opening it brings the schema to the newest migration."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url or ledger_url()
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

    # --- intake ---------------------------------------------------------------------------------------------------

    def add_requests(self, ids: Sequence[int], reason: str, tier: str, training_ids: Collection[int]) -> AddResult:
        """Queue one request per id, all or nothing.

        Refused (RequestError naming every offender, nothing written): ids not in `training_ids` (the current D),
        ids already forgotten or in a running batch, an empty reason, a tier other than normal/high. An id given
        twice counts once; an id already pending is left as it is and reported in `already_pending`.
        """
        wanted, malformed = _distinct_sample_ids(ids)
        reason = reason.strip() if isinstance(reason, str) else ""
        known = training_ids if isinstance(training_ids, set | frozenset) else set(training_ids)
        try:
            return self._add_once(wanted, malformed, reason, tier, known)
        except IntegrityError:  # another process queued one of these ids between our read and our insert
            return self._add_once(wanted, malformed, reason, tier, known)

    def _add_once(self, wanted: list[int], malformed: list[str], reason: str, tier: str,
                  known: Collection[int]) -> AddResult:
        with self._transaction() as session:
            existing = {row.sample_id: row for row in _rows_by_id(session, wanted)}
            problems = _ids_and_reason_problems(wanted, malformed, reason, "the records must be forgotten")
            if tier not in TIERS:
                problems.append(f"tier {tier!r} is not one of {', '.join(TIERS)}")
            unknown = [i for i in wanted if (i not in existing or existing[i].status == "cancelled") and i not in known]
            if unknown:
                problems.append(f"not in the current training data: {_ids(unknown)}")
            done = [existing[i] for i in wanted if i in existing and existing[i].status == "done"]
            if done:
                problems.append("already forgotten: " + _named(
                    [f"{r.sample_id} (model version {r.model_version}, batch {r.batch_id})" for r in done]))
            busy = [existing[i] for i in wanted if i in existing and existing[i].status in IN_PROGRESS]
            if busy:
                problems.append("being forgotten now: " + _named(
                    [f"{r.sample_id} ({r.status} in batch {r.batch_id})" for r in busy]))
            if problems:
                raise RequestError("deletion requests refused, nothing was written: " + "; ".join(problems))
            now = utcnow()
            revived = [existing.pop(i) for i in wanted if i in existing and existing[i].status == "cancelled"]
            for row in revived:  # a withdrawn request asked for again: pending once more, its history kept
                row.status, row.reason, row.tier, row.requested_at, row.updated_at = "pending", reason, tier, now, now
            added = [i for i in wanted if i not in existing]
            revived_ids = {r.sample_id for r in revived}
            session.add_all(RequestRow(sample_id=i, status="pending", reason=reason, tier=tier, requested_at=now,
                                       updated_at=now) for i in added if i not in revived_ids)
            session.add_all(EventRow(sample_id=i, at=now, kind="requested", detail={"reason": reason, "tier": tier})
                            for i in added)
            # A pending request asked again at a higher tier takes the higher one (a lower tier never lowers it):
            # keeping the old tier would silently unlearn what someone asked to have retrained.
            raised = [existing[i] for i in wanted
                      if i in existing and TIERS.index(tier) > TIERS.index(existing[i].tier)]
            for row in raised:
                session.add(EventRow(sample_id=row.sample_id, at=now, kind="tier-raised",
                                     detail={"from": row.tier, "to": tier, "reason": reason}))
                row.tier, row.updated_at = tier, now
            raised_ids = {row.sample_id for row in raised}
            return AddResult(added=added, already_pending=[i for i in wanted if i in existing and i not in raised_ids],
                             raised=sorted(raised_ids))

    def cancel_requests(self, ids: Sequence[int], reason: str) -> list[int]:
        """Withdraw pending requests, all or nothing: each becomes 'cancelled' with a 'cancelled' event naming why.
        Refused (RequestError naming every offender, nothing written): an empty reason, an id nobody asked for, a
        request a batch has claimed or finished (too late: `iau requests show` says where it is)."""
        wanted, malformed = _distinct_sample_ids(ids)
        reason = reason.strip() if isinstance(reason, str) else ""
        with self._transaction() as session:
            existing = {row.sample_id: row for row in _rows_by_id(session, wanted)}
            problems = _ids_and_reason_problems(wanted, malformed, reason, "the requests are withdrawn")
            if unknown := [i for i in wanted if i not in existing]:
                problems.append(f"no deletion request for {_ids(unknown)}")
            if late := [existing[i] for i in wanted if i in existing and existing[i].status != "pending"]:
                problems.append("not pending, so not cancellable: " + _named(
                    [f"{r.sample_id} ({r.status})" for r in late]))
            if problems:
                raise RequestError("cancellation refused, nothing was written: " + "; ".join(problems))
            now = utcnow()
            for i in wanted:
                existing[i].status, existing[i].updated_at = "cancelled", now
                session.add(EventRow(sample_id=i, at=now, kind="cancelled", detail={"reason": reason}))
            return wanted

    def list_requests(self, status: str | None = None) -> list[RequestView]:
        """Every request (or those with `status`), oldest first."""
        if status is not None and status not in REQUEST_STATUSES:
            raise RequestError(f"status {status!r} is not one of {', '.join(REQUEST_STATUSES)}")
        query = select(RequestRow).order_by(RequestRow.requested_at, RequestRow.sample_id)
        if status is not None:
            query = query.where(RequestRow.status == status)
        with self._transaction() as session:
            return [_request_view(row) for row in session.scalars(query)]

    def history(self, sample_id: int) -> tuple[RequestView, list[EventView]]:
        """The request and everything that happened to it, with the events of each batch that held it (the gate)."""
        if not 0 <= sample_id <= MAX_SAMPLE_ID:  # the database would overflow on it
            raise RequestError("sample_id is out of range: sample ids are integers in 0..2^63-1")
        with self._transaction() as session:
            row = session.get(RequestRow, sample_id)
            if row is None:
                raise RequestError(f"no deletion request for sample_id {sample_id}")
            own = select(EventRow.batch_id).where(EventRow.sample_id == sample_id, EventRow.batch_id.is_not(None))
            events = session.scalars(
                select(EventRow)
                .where(or_(EventRow.sample_id == sample_id,
                           EventRow.sample_id.is_(None) & EventRow.batch_id.in_(own.scalar_subquery())))
                .order_by(EventRow.id))
            return _request_view(row), [_event_view(e) for e in events]

    def forgotten_ids(self) -> list[int]:
        """Every sample_id whose request is done: records no later training or data version may hold."""
        with self._transaction() as session:
            return list(session.scalars(
                select(RequestRow.sample_id).where(RequestRow.status == "done").order_by(RequestRow.sample_id)))

    # --- the nightly batch ----------------------------------------------------------------------------------------

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
                     gate: dict[str, Any], mlflow_run_id: str | None) -> None:
        """The batch's model passed the gate and took the champion alias: its requests are done.

        Writes the gate, marks every request done with the version that first excludes it, and records the new
        champion with its drift counters. A batch that kept the champion (keep_champion) finishes on it instead:
        the champion serves the new data version, its records counted as forgotten since the last retrain.
        Repeating it for a batch already done with this model version is a no-op.
        """
        method = method_name(method)
        with self._transaction() as session:
            batch = _batch_row(session, batch_id)
            if batch.status == "done" and batch.model_version == model_version:
                return
            _require_running(batch, f"finish with model version {model_version}")
            if batch.method == "retrain" and method != "retrain":
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
            if kept:  # the same weights now serve the smaller D: no step taken, but the records count as forgotten
                parent.data_version = data_version  # without a retrain (the share limit still sees them)
                parent.forgotten_since_retrain += len(members)
                return
            remaining = parent.train_size_at_retrain - parent.forgotten_since_retrain - len(members)
            if method == "retrain":  # a full training on what is left: the drift counters restart
                counters = (0, 0, remaining)
            else:
                counters = (parent.iau_batches_since_retrain + 1, parent.forgotten_since_retrain + len(members),
                            parent.train_size_at_retrain)
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

    # --- champions ------------------------------------------------------------------------------------------------

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

    # --- model purges ---------------------------------------------------------------------------------------------

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

    def finish_model_purge(self, purge_id: int, report: dict[str, Any], cleared_data_versions: list[str]) -> list[int]:
        """The purge is done: record what it removed and could not, and give each done request whose every earlier
        data version is now without weights its receipt (this purge). Returns those sample ids; idempotent."""
        with self._transaction() as session:
            row = session.get(ModelPurgeRow, purge_id, with_for_update=True)
            if row is None:
                raise LedgerError(f"no model purge with id {purge_id}")
            if row.status == "done":
                return []
            now = utcnow()
            row.status, row.finished_at, row.report = "done", now, plain_json(report)
            row.cleared_data_versions = sorted(set(cleared_data_versions))
            cleared = {v for done in session.scalars(select(ModelPurgeRow.cleared_data_versions)
                                                     .where(ModelPurgeRow.status == "done")) for v in done}
            batches = session.scalars(select(BatchRow).where(BatchRow.status == "done").order_by(BatchRow.id)).all()
            receipts = []
            for request in session.scalars(select(RequestRow).where(RequestRow.status == "done",
                                                                    RequestRow.model_purge_id.is_(None))):
                # the record was in its batch's parent data version and in every version before it
                held = {b.parent_data_version for b in batches if b.id <= request.batch_id} | \
                    {b.data_version for b in batches if b.id < request.batch_id}
                if held <= cleared:
                    request.model_purge_id, request.updated_at = purge_id, now
                    session.add(EventRow(sample_id=request.sample_id, batch_id=request.batch_id, at=now,
                                         kind="weights-purged", detail={"model_purge": purge_id}))
                    receipts.append(request.sample_id)
            return sorted(receipts)

    def model_purge(self, purge_id: int) -> ModelPurgeView:
        with self._transaction() as session:
            row = session.get(ModelPurgeRow, purge_id)
            if row is None:
                raise LedgerError(f"no model purge with id {purge_id}")
            return _model_purge_view(row)


# --- helpers ----------------------------------------------------------------------------------------------------


def method_name(method: str) -> str:
    """`method` if it has a method's shape (lowercase, at most 16 characters): which names exist is the params'
    business (nightly.ladder is validated against the unlearning registry), not the ledger's."""
    if not isinstance(method, str) or not METHOD_NAME.fullmatch(method):
        raise LedgerError(f"method {method!r} is not a method name (lowercase letters, digits, _; at most 16)")
    return method


def plain_json(value: Any) -> Any:
    """`value` as plain JSON every backend stores: numpy scalars as numbers, NaN/inf as strings (PostgreSQL's json
    rejects them, and a NaN loss is exactly what a failed gate must be able to record)."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # 'nan', 'inf', '-inf'
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise LedgerError(f"cannot store {type(value).__name__} {value!r} as JSON")


def _distinct_sample_ids(ids: Iterable[object]) -> tuple[list[int], list[str]]:
    """(the valid ids in first-seen order, once each; the ones that are not integers >= 0, as given)."""
    seen: dict[int, None] = {}
    bad = []
    for raw in ids:
        try:
            value = index(raw) if not isinstance(raw, bool) else -1
        except TypeError:
            value = -1
        if not 0 <= value <= MAX_SAMPLE_ID:
            bad.append(_short_repr(raw))
        else:
            seen.setdefault(value, None)
    return list(seen), bad


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "<a number too large>"
    return text if len(text) <= 40 else text[:37] + "..."


def _rows_by_id(session: Session, ids: list[int]) -> list[RequestRow]:
    rows = []
    for start in range(0, len(ids), CHUNK):
        rows += session.scalars(select(RequestRow).where(RequestRow.sample_id.in_(ids[start:start + CHUNK])))
    return rows


def _ids(ids: list[int]) -> str:
    return _named([str(i) for i in ids])


def _named(items: Sequence[str]) -> str:
    """The first MAX_NAMED items, then a count of the rest: a refusal stays short whatever the input."""
    shown = ", ".join(items[:MAX_NAMED])
    return shown if len(items) <= MAX_NAMED else f"{shown} and {len(items) - MAX_NAMED} more"


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


def _current_champion(session: Session) -> ChampionRow | None:
    return session.scalars(select(ChampionRow).order_by(ChampionRow.id.desc()).limit(1)).first()


def _champion_row(model_version: str, method: str, batch_id: int | None, data_version: str, at,
                  iau_batches: int, forgotten: int, train_size: int) -> ChampionRow:
    return ChampionRow(model_version=model_version, method=method, batch_id=batch_id, data_version=data_version,
                       promoted_at=at, iau_batches_since_retrain=iau_batches, forgotten_since_retrain=forgotten,
                       train_size_at_retrain=train_size)


def _request_view(row: RequestRow) -> RequestView:
    return RequestView(sample_id=row.sample_id, status=row.status, reason=row.reason, tier=row.tier,
                       requested_at=row.requested_at, updated_at=row.updated_at, batch_id=row.batch_id,
                       model_version=row.model_version, data_version=row.data_version,
                       escalation_reason=row.escalation_reason, model_purge_id=row.model_purge_id)


def _model_purge_view(row: ModelPurgeRow) -> ModelPurgeView:
    return ModelPurgeView(id=row.id, status=row.status, started_at=row.started_at, finished_at=row.finished_at,
                          plan=row.plan, report=row.report, cleared_data_versions=list(row.cleared_data_versions))


def _ids_and_reason_problems(wanted: list[int], malformed: list[str], reason: str, why: str) -> list[str]:
    """What every call that names requests refuses first: malformed ids, no ids, no reason."""
    problems = []
    if malformed:
        problems.append(f"sample ids must be integers in 0..2^63-1, got {_named(malformed)}")
    elif not wanted:
        problems.append("no sample ids given")
    if not reason:
        problems.append(f"the reason is empty: say why {why}")
    return problems


def _event_view(row: EventRow) -> EventView:
    return EventView(id=row.id, at=row.at, kind=row.kind, sample_id=row.sample_id, batch_id=row.batch_id,
                     detail=row.detail)


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
