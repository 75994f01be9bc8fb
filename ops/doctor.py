"""`iau doctor`: does the ledger agree with the model registry and the data, what was repaired, and the one thing
to do next.

Safe repairs only, under the nightly lock (never beside a running batch): a running batch with no registered
model version is released, its requests pending again (stores/reconcile.py). Every state gets one consistent
advice: when the registry has lost its history (the MLflow store was lost or replaced), restoring it comes first,
and a batch that had registered a version is named as what `iau nightly` finishes *after* the restore, never as
a second, contradicting step.

Plain functions over the project's folder, params and open ledger: no Prefect, no Typer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from iau_core.config import Params
from ledger import ChampionView, Ledger


class TrackingUnreachable(RuntimeError):
    """MLflow tracking cannot be reached: nothing was checked or repaired."""


class RegistryUnreadable(RuntimeError):
    """The model registry answered, but could not be read: nothing was repaired."""


@dataclass
class Diagnosis:
    champion: ChampionView | None
    pending: int
    released: list[int] = field(default_factory=list)  # running batches with no version: pending again
    to_finish: list[int] = field(default_factory=list)  # running batches with a registered version
    data_version: str | None = None  # what data.dvc names; None when it cannot be read
    data_problem: str | None = None  # why data.dvc cannot be read
    problem: str | None = None  # the registry lost the ledger's history: a person must restore it
    advice: list[str] = field(default_factory=list)  # one line per finding, consistent with `problem`

    @property
    def healthy(self) -> bool:
        return self.problem is None and self.data_problem is None


def diagnose(root: Path, params: Params, ledger: Ledger) -> Diagnosis:
    """Reconcile the ledger with the registry (releasing what is safe to release), then say what to do."""
    from mlflow.exceptions import MlflowException

    from stores import tracking
    from stores.reconcile import reconcile

    try:
        tracking.configure(root, params.tracking.experiment)
    except Exception as exc:  # whatever the MLflow client raises when it cannot connect
        raise TrackingUnreachable(f"MLflow tracking at {tracking.display_uri(tracking.tracking_uri(root))} is "
                                  f"unreachable ({type(exc).__name__}): nothing was checked") from None
    with ledger.nightly_lock(owner="iau doctor"):
        try:
            found = reconcile(ledger, params.tracking.deployed_model)
        except MlflowException as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise RegistryUnreadable(f"the model registry cannot be read: {first}") from None
        champion = ledger.current_champion()
        pending = len(ledger.list_requests("pending"))
    diagnosis = Diagnosis(champion, pending, found.released, found.to_finish, problem=found.problem)
    diagnosis.data_version, diagnosis.data_problem = recorded_data_version(root)
    diagnosis.advice = advice(diagnosis)
    return diagnosis


def recorded_data_version(root: Path) -> tuple[str | None, str | None]:
    """(the md5 data.dvc names, None) or (None, why it cannot be read)."""
    from stores.data import recorded_version

    try:
        return recorded_version(root)[0], None
    except (OSError, KeyError, TypeError, IndexError, ValueError) as exc:
        return None, f"the data version cannot be read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def advice(d: Diagnosis) -> list[str]:
    """One line per finding. With the registry's history lost, every line points to the restore first."""
    lines = [f"released batch {b}: no model version was registered for it; its requests are pending again"
             for b in d.released]
    if d.problem:
        lines += [f"batch {b} registered a model version the registry no longer holds: once the MLflow store is "
                  "restored, `iau doctor` checks again and `iau nightly` finishes the batch" for b in d.to_finish]
        return lines  # the data notice waits: which champion counts is unknown until the restore
    lines += [f"batch {b} has a registered model version: `iau nightly` finishes it" for b in d.to_finish]
    if d.champion is not None and d.data_version is not None and d.champion.data_version != d.data_version:
        lines.append(f"notice: data.dvc names data version {d.data_version}, the champion was made on "
                     f"{d.champion.data_version}; `iau train` retrains on the current data")
    return lines
