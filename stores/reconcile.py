"""The ledger and the model registry must tell the same story before a batch claims requests or a training
registers a version: the ledger's champion must still be in the registry, as the model the ledger recorded.

When the MLflow store is lost (mlflow.db and mlartifacts deleted), the registry numbers versions from 1 again; a
batch or `iau train` would register a version whose number the ledger already holds for another model, move the
alias, and only then be refused by the ledger, leaving requests stuck in `processing`. `check` finds that first,
so the commands refuse with what to do; `reconcile` (`iau doctor`, and `iau nightly` before claiming) also releases
a running batch whose registered version is missing, so no request stays stuck.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ledger import ChampionView, Ledger
from stores import registry

RESTORE = ("Restore the MLflow store (mlflow.db and mlartifacts, or the tracking server's database and artifact "
           "store) from a backup, then run `iau doctor` again. Nothing was claimed or registered.")


class RegistryDiverged(RuntimeError):
    """The registry no longer holds the ledger's champion: its history was lost or replaced."""


@dataclass
class Reconciled:
    problem: str | None = None  # the registry has lost the ledger's history: the commands refuse
    released: list[int] = field(default_factory=list)  # running batches whose version is missing: pending again
    to_finish: list[int] = field(default_factory=list)  # running batches with a registered version: `iau nightly`


def check(ledger: Ledger, model_name: str) -> str | None:
    """Why the registry and the ledger disagree about the champion, or None when they agree (or nothing was
    recorded yet)."""
    recorded = ledger.current_champion()
    if recorded is None:
        return None
    try:
        found = MlflowClient().get_model_version(model_name, recorded.model_version)
    except MlflowException:
        return (f"the ledger's champion is version {recorded.model_version} of {model_name!r} (data version "
                f"{recorded.data_version}), but the model registry has no such version: it has lost its history. "
                + RESTORE)
    if _created_after(found.creation_timestamp, recorded):
        return (f"version {recorded.model_version} of {model_name!r} in the registry was created after the ledger "
                f"recorded its champion of that number: it is another model, the registry's history was replaced. "
                + RESTORE)
    return None


def reconcile(ledger: Ledger, model_name: str, release_unregistered: bool = True) -> Reconciled:
    """Bring running batches in line with the registry (call it holding the nightly lock): a batch with no
    registered version is released (its requests pending again); one with a version is left for `iau nightly` to
    finish (after a restore, when the registry lost its history). `iau nightly` passes release_unregistered=False:
    it resumes such a batch itself, under the same id. Returns what it found and did."""
    result = Reconciled(problem=check(ledger, model_name))
    for batch in ledger.batches():
        if batch.status != "running" or not (result.problem or release_unregistered):
            continue
        # with its history lost the registry cannot say; the ledger's steps can: before "register" nothing
        # irreversible happened (no version, data untouched), so the requests can safely go back to pending
        # (a batch that kept the champion unchanged registered nothing but holds its model version: past it too)
        registered = "register" in batch.steps if result.problem else \
            batch.model_version is not None or registry.find(model_name, "batch_id", str(batch.id)) is not None
        if not registered:
            why = result.problem or "no model version is registered for it"
            ledger.release_batch(batch.id, f"released by reconciliation: {why}")
            result.released.append(batch.id)
        else:
            result.to_finish.append(batch.id)
    return result


def _created_after(timestamp_ms: int | None, recorded: ChampionView) -> bool:
    if not timestamp_ms:
        return False
    created = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    promoted = recorded.promoted_at if recorded.promoted_at.tzinfo else recorded.promoted_at.replace(tzinfo=UTC)
    return created > promoted
