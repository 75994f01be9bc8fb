"""The nightly deletion batch as a Prefect flow: the deployment deletion-batch/nightly (prefect.yaml, 02:00) runs it
through a worker, with each heavy step a task in the Prefect UI. The batch itself, its order of steps and its
exactly-once rules are ops/batch.py's, which `iau nightly` runs in-process with plain steps; this flow only builds
the project at its edge, takes the nightly lock, and supplies the steps as tasks:

    lock -> ops.batch.process_pending(project, PrefectSteps):
      ensure-data -> unlearn-batch (each rung of nightly.ladder) -> gate -> ... -> audit
    -> step-times (the batch's seconds per step, once it ended)
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from iau_core.deletion import GateResult
from iau_core.runtime import prepare_process
from iau_core.unlearning import MethodResult
from ledger import ledger_url
from ops.batch import GateFailed, PreconditionFailed, process_pending
from ops.project import TrackingUnavailable, open_project
from stores.champion import Champion
from stores.project import RunContext, project_root
from tasks.data import ensure_data_task
from tasks.deletion import gate, publish_audit, publish_step_times, unlearn_batch

__all__ = ["GateFailed", "PreconditionFailed", "PrefectSteps", "TrackingUnavailable", "deletion_batch"]


class PrefectSteps:
    """ops.batch_steps.BatchSteps as Prefect tasks of this flow run, logging to the run's logger."""

    def __init__(self) -> None:
        self.log = get_run_logger()
        self.flow_run_id = str(flow_run.id)
        self.started_by = f"prefect flow run {self.flow_run_id}"

    def ensure_data(self, root: Path) -> str:
        return ensure_data_task(str(root))

    def unlearn(self, ctx: RunContext, champion: Champion, ids: list[int], method: str, run_id: str) -> MethodResult:
        return unlearn_batch(ctx, champion, ids, method, run_id)

    def gate(self, ctx: RunContext, champion: Champion, candidate: MethodResult, ids: list[int],
             run_id: str) -> GateResult:
        return gate(ctx, champion, candidate, ids, run_id)

    def publish_audit(self, audit: dict, run_id: str) -> str:
        return publish_audit(audit, run_id)

    def after_step(self, name: str) -> None:
        pass


@flow(name="deletion-batch")
def deletion_batch(params_file: str = "params.yaml", overrides: dict | None = None,
                   project_dir: str | None = None) -> dict:
    """Process every pending deletion request as one batch (ops/batch.py); returns what happened."""
    root = project_root(project_dir)
    project = open_project(root, overrides, ledger_url(root), params_file)  # the worker's IAU_LEDGER_URL, if set
    prepare_process(project.params.threads)  # here, not in a __main__: a worker's flow run must take its share too
    steps = PrefectSteps()
    try:
        with project.ledger.nightly_lock(owner=steps.started_by):
            outcome = process_pending(project, steps)
            if outcome.batch_id is not None:  # every step timed now, the refresh and export after the audit too
                publish_step_times(outcome.batch_id, project.ledger.batch(outcome.batch_id).steps)
            return outcome.as_json()
    finally:
        project.ledger.close()
