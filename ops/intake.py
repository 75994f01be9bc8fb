"""Intake: deletion requests as a person hands them in, checked and queued (or withdrawn) in the ledger.

The rules, in the order they are applied, each refusing the whole call with nothing written (IntakeRefused):
- ids: integers in 0..2^63-1, typed or from a file (iau_core.ids, the one strict reader), at most
  `requests.max_ids_per_call` of them, and at least one;
- the reason: non-empty text that can be stored (a byte that is not UTF-8 arrives as a lone surrogate);
- every id a record of D, the current training data (read here through iau_core.data.load_bundle, the function
  the flows cut their roles with, so both always agree); the ledger then refuses forgotten or claimed ids.

Plain functions, no Prefect, no Typer: `checked_request` and `training_ids` open nothing (a refusal leaves no
file behind, not even an empty ledger); then `add_requests` / `cancel_requests` take the open ledger.
`cli/` renders what they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iau_core.config import Params, RequestsParams
from iau_core.ids import IdFileError, parse_ids, read_ids_file
from ledger import Ledger

# `iau data ids --role` names -> the bundle's split. train is D: the only records a deletion request may name.
ROLES = {"train": "train", "val": "val", "test": "test", "shadow": "shadow_pool"}


class IntakeRefused(ValueError):
    """The request is malformed (bad ids, no ids, too many, a reason that cannot be stored); nothing was written."""


class DataUnreadable(OSError):
    """The current data cannot be read, so the ids cannot be checked against D; nothing was written."""


@dataclass(frozen=True)
class Request:
    """A call's ids and reason, checked (nothing opened yet)."""

    ids: list[int]
    reason: str


@dataclass(frozen=True)
class Added:
    tier: str
    added: list[int]
    raised: list[int]  # already pending at a lower tier: raised to this one
    already_pending: list[int]


def wanted_ids(ids: list[str], file: Path | None, limits: RequestsParams) -> list[int]:
    """The ids of one call, typed and from `file`, within the limits; IntakeRefused otherwise."""
    try:
        wanted = parse_ids(ids, limits.max_ids_per_call)
        if file is not None:
            wanted += read_ids_file(file, limits.max_file_bytes, limits.max_ids_per_call)
    except IdFileError as exc:
        raise IntakeRefused(str(exc)) from None
    if not wanted:
        raise IntakeRefused("no sample ids: give them as arguments or with --file")
    if len(wanted) > limits.max_ids_per_call:
        raise IntakeRefused(f"{len(wanted)} ids, more than the limit of {limits.max_ids_per_call} per call "
                            "(params.yaml requests.max_ids_per_call); nothing was written")
    return wanted


def checked_reason(reason: str) -> str:
    """The reason as the audit keeps it. A byte that is not UTF-8 (a shell passes it on as a lone surrogate)
    cannot be stored or shown: refused, naming its position, never echoing it."""
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise IntakeRefused(f"the reason holds a byte that is not UTF-8 text (character {exc.start + 1}); "
                            "give it as plain text") from None
    if not reason.strip():
        raise IntakeRefused("the reason is empty: say why the records must be forgotten (kept in the audit)")
    return reason


def role_ids(root: Path, params: Params, role: str = "train") -> list[int]:
    """The sample ids of one role of the current data under `root`, ascending (this process takes its thread
    share first: the roles are drawn with torch)."""
    from iau_core.data import load_bundle
    from iau_core.runtime import prepare_process

    if role not in ROLES:
        raise IntakeRefused(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    prepare_process(params.threads)
    try:
        bundle = load_bundle(params.data, root / params.data.root)
    except (OSError, ValueError) as exc:  # data/ missing or corrupt, roles that do not fit it
        raise DataUnreadable(f"cannot read the current data under {root}: {exc}") from None
    return sorted(getattr(bundle, ROLES[role]).ids.tolist())


def checked_request(limits: RequestsParams, ids: list[str], file: Path | None, reason: str) -> Request:
    """The ids and reason of an `add`, refused (IntakeRefused) before anything is opened."""
    return Request(wanted_ids(ids, file, limits), checked_reason(reason))


def training_ids(root: Path, params: Params) -> set[int]:
    """The sample ids of D, the training set of the current data: the only ids a request may name."""
    return set(role_ids(root, params, "train"))


def add_requests(ledger: Ledger, request: Request, tier: str, known: set[int]) -> Added:
    """Queue one request per id, all or nothing: every id must be in `known` (training_ids, read before the
    ledger is opened); the ledger refuses forgotten or claimed ids."""
    result = ledger.add_requests(request.ids, request.reason, tier, known)
    return Added(tier, result.added, result.raised, result.already_pending)


def checked_cancel(limits: RequestsParams, ids: list[str], reason: str) -> Request:
    """The ids and reason of a `cancel`, refused (IntakeRefused) before anything is opened."""
    try:
        wanted = parse_ids(ids, limits.max_ids_per_call)
    except IdFileError as exc:
        raise IntakeRefused(str(exc)) from None
    if not wanted:
        raise IntakeRefused("no sample ids: give the ids of pending requests as arguments")
    return Request(wanted, checked_reason(reason))


def cancel_requests(ledger: Ledger, request: Request) -> list[int]:
    """Withdraw pending requests, all or nothing; the ledger refuses ids that are not pending."""
    return ledger.cancel_requests(request.ids, request.reason)
