"""What the ledger's parts share: limits, the shape of a method's name, JSON every backend stores, ids in chunks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.errors import LedgerError
from ledger.models import METHOD_NAME, RequestRow

IN_PROGRESS = ("processing", "escalated")  # claimed by a batch that has not finished
CHUNK = 500  # ids per IN (...) query: far below every driver's parameter limit
MAX_SAMPLE_ID = 2**63 - 1  # sample_id is a 64-bit signed column; larger ids are refused, not overflowed
MAX_NAMED = 20  # ids named in a refusal; beyond that, a count (a million unknown ids make one short line)


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


def rows_by_id(session: Session, ids: list[int]) -> list[RequestRow]:
    rows = []
    for start in range(0, len(ids), CHUNK):
        rows += session.scalars(select(RequestRow).where(RequestRow.sample_id.in_(ids[start:start + CHUNK])))
    return rows


def named(items: Sequence[str]) -> str:
    """The first MAX_NAMED items, then a count of the rest: a refusal stays short whatever the input."""
    shown = ", ".join(items[:MAX_NAMED])
    return shown if len(items) <= MAX_NAMED else f"{shown} and {len(items) - MAX_NAMED} more"
