"""The deletion-request ledger: a database (SQLite or PostgreSQL, schema by Alembic migrations) of what was asked
to be forgotten, which nightly batch handled it, the gate's numbers and the model and data versions that first
exclude each record. MLflow records what happened to models; the ledger records what was asked and what was done.

Imports SQLAlchemy and Alembic only (no torch, prefect, mlflow or dvc), so the CLI opens it fast.
"""

from ledger.errors import LedgerError, LedgerUrlError, LockHeld, RequestError
from ledger.models import BATCH_STATUSES, REQUEST_STATUSES, TIERS
from ledger.store import Ledger, default_ledger_url, ledger_url
from ledger.views import (
    AddResult,
    Batch,
    BatchView,
    ChampionView,
    DriftCounters,
    EventView,
    ModelPurgeView,
    RequestView,
)

__all__ = [
    "BATCH_STATUSES", "REQUEST_STATUSES", "TIERS",
    "AddResult", "Batch", "BatchView", "ChampionView", "DriftCounters", "EventView", "Ledger", "LedgerError",
    "LockHeld", "LedgerUrlError", "ModelPurgeView", "RequestError", "RequestView", "default_ledger_url", "ledger_url",
]
