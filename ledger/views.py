"""Plain, immutable snapshots of ledger rows: what callers get back, safe to use after the transaction ends."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _AsJson:
    def as_json(self) -> dict[str, Any]:
        """Every field, timestamps as ISO 8601 (with their +00:00 zone)."""
        return _jsonable(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class AddResult:
    added: list[int]  # newly queued, in the order given
    already_pending: list[int]  # queued before: nothing changed for them
    raised: list[int] = field(default_factory=list)  # queued before at a lower tier: now at the tier asked for


@dataclass(frozen=True)
class RequestView(_AsJson):
    sample_id: int
    status: str
    reason: str
    tier: str
    requested_at: datetime
    updated_at: datetime
    batch_id: int | None
    model_version: str | None  # the registered version that first excludes the record
    data_version: str | None  # the data version that first lacks it
    escalation_reason: str | None
    model_purge_id: int | None = None  # the model purge that removed the last weights still holding it


@dataclass(frozen=True)
class ModelPurgeView(_AsJson):
    id: int
    status: str  # planned (written before any removal) | done
    started_at: datetime
    finished_at: datetime | None
    plan: dict[str, Any]
    report: dict[str, Any] | None
    cleared_data_versions: list[str]  # data versions no weights are left of after this purge


@dataclass(frozen=True)
class EventView(_AsJson):
    id: int
    at: datetime
    kind: str
    sample_id: int | None  # None: an event of the whole batch (e.g. the gate)
    batch_id: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Batch(_AsJson):
    """The work of one nightly run, as open_batch hands it over (claimed now, or resumed after a crash)."""

    id: int
    sample_ids: list[int]
    tiers: dict[int, str]  # sample_id -> normal | high
    started_at: datetime
    resumed: bool  # True: this batch was running when the previous process died
    parent_model_version: str
    parent_data_version: str
    method: str  # the ladder's first rung (nightly.ladder), or retrain once escalated
    escalation_reason: str | None

    @property
    def has_high_tier(self) -> bool:
        return "high" in self.tiers.values()


@dataclass(frozen=True)
class BatchView(_AsJson):
    id: int
    status: str
    method: str
    started_at: datetime
    finished_at: datetime | None
    parent_model_version: str
    parent_data_version: str
    model_version: str | None
    data_version: str | None
    escalation_reason: str | None
    gate: dict[str, Any] | None
    steps: dict[str, float]
    mlflow_run_id: str | None
    error: str | None
    sample_ids: list[int] = field(default_factory=list)  # every request this batch claimed


@dataclass(frozen=True)
class DriftCounters:
    """What a champion has been through since its last full training (ops/drift.py computes them after a batch)."""
    iau_batches_since_retrain: int
    forgotten_since_retrain: int
    train_size_at_retrain: int


@dataclass(frozen=True)
class ChampionView(_AsJson):
    model_version: str
    method: str  # train, or the rung of nightly.ladder that made it (iau, retrain, ...)
    batch_id: int | None
    data_version: str
    promoted_at: datetime
    iau_batches_since_retrain: int
    forgotten_since_retrain: int
    train_size_at_retrain: int

    @property
    def forgotten_share(self) -> float:
        """The share of D (as it was at the last full training) forgotten without retraining since: what the drift
        limit reads."""
        return self.forgotten_since_retrain / self.train_size_at_retrain
