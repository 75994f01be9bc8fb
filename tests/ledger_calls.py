"""Ledger calls as ops/batch.py makes them, for tests that drive the ledger directly (not a test module)."""

from __future__ import annotations

from typing import Any

from ledger import Ledger
from ops.drift import counters_after


def finish(ledger: Ledger, batch_id: int, model_version: str, data_version: str, method: str, gate: dict[str, Any],
           mlflow_run_id: str | None) -> None:
    """Ledger.finish_batch with the drift counters the batch would give it (ops.drift.counters_after)."""
    batch = ledger.batch(batch_id)
    drift = counters_after(ledger.current_champion(), method, len(batch.sample_ids), batch.model_version is not None)
    ledger.finish_batch(batch_id, model_version, data_version, method, gate, mlflow_run_id, drift)
