"""The requests' side of the ledger: queue, cancel, list and trace deletion requests (a mixin of ledger.Ledger)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from operator import index

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.common import IN_PROGRESS, MAX_SAMPLE_ID, named, rows_by_id
from ledger.errors import RequestError
from ledger.models import REQUEST_STATUSES, TIERS, EventRow, RequestRow, utcnow
from ledger.views import AddResult, EventView, RequestView


class Requests:
    """Intake: every method one transaction (Ledger._transaction)."""
    _transaction: Callable[[], AbstractContextManager[Session]]  # Ledger's: one call, one transaction

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
            existing = {row.sample_id: row for row in rows_by_id(session, wanted)}
            problems = _ids_and_reason_problems(wanted, malformed, reason, "the records must be forgotten")
            if tier not in TIERS:
                problems.append(f"tier {tier!r} is not one of {', '.join(TIERS)}")
            unknown = [i for i in wanted if (i not in existing or existing[i].status == "cancelled") and i not in known]
            if unknown:
                problems.append(f"not in the current training data: {_ids(unknown)}")
            done = [existing[i] for i in wanted if i in existing and existing[i].status == "done"]
            if done:
                problems.append("already forgotten: " + named(
                    [f"{r.sample_id} (model version {r.model_version}, batch {r.batch_id})" for r in done]))
            busy = [existing[i] for i in wanted if i in existing and existing[i].status in IN_PROGRESS]
            if busy:
                problems.append("being forgotten now: " + named(
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
            existing = {row.sample_id: row for row in rows_by_id(session, wanted)}
            problems = _ids_and_reason_problems(wanted, malformed, reason, "the requests are withdrawn")
            if unknown := [i for i in wanted if i not in existing]:
                problems.append(f"no deletion request for {_ids(unknown)}")
            if late := [existing[i] for i in wanted if i in existing and existing[i].status != "pending"]:
                problems.append("not pending, so not cancellable: " + named(
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


def _ids(ids: list[int]) -> str:
    return named([str(i) for i in ids])


def _ids_and_reason_problems(wanted: list[int], malformed: list[str], reason: str, why: str) -> list[str]:
    """What every call that names requests refuses first: malformed ids, no ids, no reason."""
    problems = []
    if malformed:
        problems.append(f"sample ids must be integers in 0..2^63-1, got {named(malformed)}")
    elif not wanted:
        problems.append("no sample ids given")
    if not reason:
        problems.append(f"the reason is empty: say why {why}")
    return problems


def _request_view(row: RequestRow) -> RequestView:
    return RequestView(sample_id=row.sample_id, status=row.status, reason=row.reason, tier=row.tier,
                       requested_at=row.requested_at, updated_at=row.updated_at, batch_id=row.batch_id,
                       model_version=row.model_version, data_version=row.data_version,
                       escalation_reason=row.escalation_reason, model_purge_id=row.model_purge_id)


def _event_view(row: EventRow) -> EventView:
    return EventView(id=row.id, at=row.at, kind=row.kind, sample_id=row.sample_id, batch_id=row.batch_id,
                     detail=row.detail)
