"""The steps of one deletion batch as Prefect tasks, for the deployment's flow (flows/nightly.py): unlearn (a rung
of nightly.ladder from the champion, or retrain on the retained data), gate, and the audit report. Each calls the
plain step of ops/batch_steps.py that `iau nightly` calls in-process; ledger and registry state changes stay in
ops/batch.py, where their order is visible.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from iau_core.deletion import GateResult
from iau_core.unlearning import MethodResult
from ops.batch_steps import attempt_rows, gate_candidate, log_audit
from ops.batch_steps import unlearn_batch as unlearn_plain
from stores.champion import Champion
from stores.project import RunContext


@task(name="unlearn-batch", task_run_name="{method}-batch", cache_policy=NO_CACHE)
def unlearn_batch(ctx: RunContext, champion: Champion, forget_ids: list[int], method: str,
                  run_id: str) -> MethodResult:
    """ops.batch_steps.unlearn_batch as a task: the rung's model, recorded on the batch's MLflow run."""
    return unlearn_plain(ctx, champion, forget_ids, method, run_id, get_run_logger())


@task(name="gate", task_run_name="gate-{candidate.method}", cache_policy=NO_CACHE)
def gate(ctx: RunContext, champion: Champion, candidate: MethodResult, forget_ids: list[int],
         run_id: str) -> GateResult:
    """ops.batch_steps.gate_candidate as a task: the candidate judged against the champion on the batch's records."""
    return gate_candidate(ctx, champion, candidate, forget_ids, run_id, get_run_logger())


@task(name="audit", cache_policy=NO_CACHE)
def publish_audit(audit: dict, run_id: str) -> str:
    """The audit onto the batch's MLflow run (Markdown and JSON) and as Prefect artifacts (the audit, and a table
    of the ladder's attempts); returns the Markdown."""
    markdown = log_audit(audit, run_id)
    create_markdown_artifact(markdown, key=f"deletion-batch-{audit['batch_id']}",
                             description=f"audit of deletion batch {audit['batch_id']}")
    create_table_artifact(attempt_rows(audit["gates"]), key=f"deletion-batch-{audit['batch_id']}-ladder",
                          description=f"deletion batch {audit['batch_id']}: {audit['outcome']}")
    return markdown
