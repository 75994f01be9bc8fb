"""The steps of one deletion batch as Prefect tasks, for the deployment's flow (flows/nightly.py): unlearn (a rung
of nightly.ladder from the champion, or retrain on the retained data), gate, the audit report, and the batch's
step times. Each calls the plain step of ops/batch_steps.py that `iau nightly` calls in-process; ledger and
registry state changes stay in ops/batch.py, where their order is visible.

What the Prefect UI shows of a batch (its artifacts, keyed by batch id so that a rerun of the same batch adds a
version under the same key instead of a second artifact):
- `deletion-batch-<id>`: the audit as Markdown, its request list capped (the full list stays in the MLflow run's
  audit/batch-<id>.md and .json, the record of the batch);
- `deletion-batch-<id>-ladder`: one row per rung tried, rounded to what the gate resolves, with its seconds;
- `deletion-batch-<id>-steps`: every step's seconds, the gradient refresh and export after the audit included.
"""

from __future__ import annotations

import math
import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from iau_core.deletion import GateResult
from iau_core.unlearning import MethodResult
from ops.batch_steps import attempt_rows, gate_candidate, log_audit
from ops.batch_steps import unlearn_batch as unlearn_plain
from reporting.tables import audit_report
from stores.champion import Champion
from stores.project import RunContext

REQUESTS_SHOWN = 20  # an artifact of 1,000 ids is unreadable; the count and the first ones tell the operator enough
# An attack AUC's standard deviation under the null (iau_core.deletion.chance_auc_std) is 0.013 for 1,000 deleted
# records and 0.004 for 10,000: a third decimal is below what the gate resolves, more digits are noise. Seconds to
# the tenth.
AUC_DECIMALS, SECONDS_DECIMALS = 3, 1
ROUNDED_TO_AUC = ("forget_auc_champion", "forget_auc_candidate", "auc_threshold", "val_acc_drop")
# The ladder table's headers: the gate's names (gates.json, docs/metrics.md) are too long for a 1280 px screen, where
# the seconds ended up behind a horizontal scroll; the artifact's description says what each one is.
LADDER_HEADERS = {"method": "method", "accepted": "accepted", "privacy_verdict": "privacy",
                  "unlearn_seconds": "step s", "gate_seconds": "gate s", "forget_auc_champion": "AUC pre",
                  "forget_auc_candidate": "AUC post", "auc_threshold": "limit", "val_acc_drop": "Δ acc"}
LADDER_LEGEND = ("step s, gate s: seconds of the rung's unlearning step and of its gate; AUC pre/post: the gate's "
                 "attack on the deleted records, champion/candidate; limit: the smallest AUC it can detect; Δ acc: "
                 "the validation accuracy's drop, in points")
KEY = re.compile(r"^[a-z0-9-]+$")  # what Prefect accepts as an artifact key (prefect.types.names)
STEP_MEANING = {  # the ledger's step names (ops/batch.py), as an operator asks about them
    "data": "data check", "preconditions": "preconditions", "champion": "load the champion",
    "register": "registration", "forget-data": "forgetting (DVC data)", "promote": "champion alias",
    "audit": "audit", "finish": "ledger: requests done", "cache-gradient": "gradient refresh",
    "export-model": "servable export (pt2)"}


def artifact_key(batch_id: int, part: str = "") -> str:
    """The batch's artifact key: the same for every run of this batch (Prefect versions it), valid for Prefect."""
    key = f"deletion-batch-{int(batch_id)}" + (f"-{part}" if part else "")
    if not KEY.match(key):
        raise ValueError(f"{key!r} is not a Prefect artifact key (lowercase letters, digits, dashes)")
    return key


def rounded(value: object, decimals: int) -> object:
    """A float to `decimals`; NaN and infinities (a gate's undefined AUC) and non-floats as they are."""
    return round(value, decimals) if isinstance(value, float) and math.isfinite(value) else value


def ladder_rows(audit: dict) -> list[dict]:
    """One row per rung tried (ops.batch_steps.attempt_rows), rounded, with the rung's step times: its unlearning
    (the method's own seconds) and its gate (the ledger's `gate-<method>` step); headed by LADDER_HEADERS."""
    rows = []
    for row in attempt_rows(audit["gates"]):
        row = {k: rounded(v, AUC_DECIMALS) if k in ROUNDED_TO_AUC else v for k, v in row.items()}
        row |= {"unlearn_seconds": rounded(row.pop("seconds"), SECONDS_DECIMALS),
                "gate_seconds": rounded(audit["steps"].get(f"gate-{row['method']}"), SECONDS_DECIMALS)}
        rows.append({header: row[key] for key, header in LADDER_HEADERS.items()})
    return rows


def step_meaning(step: str) -> str:
    """What a ledger step name is, in words ("unlearn-salun": the unlearning step of that rung)."""
    kind, _, method = step.partition("-")
    if kind in ("unlearn", "gate") and method:
        return f"{'unlearning' if kind == 'unlearn' else 'gate'} ({method})"
    return STEP_MEANING.get(step, step.replace("-", " "))


def step_rows(steps: dict[str, float]) -> list[dict]:
    """The batch's steps in the order they ran, seconds to the tenth, and their total."""
    rows = [{"step": name, "what": step_meaning(name),
             "seconds": rounded(float(seconds), SECONDS_DECIMALS)} for name, seconds in steps.items()]
    return rows + [{"step": "total", "what": "all steps", "seconds": rounded(float(sum(steps.values())),
                                                                            SECONDS_DECIMALS)}]


def audit_markdown(audit: dict, shown: int = REQUESTS_SHOWN) -> str:
    """The audit (reporting.tables.audit_report) with its request list cut to the first `shown`, its count and
    where the rest is listed."""
    rest = (f"every request of this batch is in `audit/batch-{audit['batch_id']}.json` on MLflow run "
            f"{audit['mlflow_run_id']}; `iau requests list` lists each request with its batch_id (`--json` for all "
            "fields), `iau requests show <sample_id>` one request's history.")
    return audit_report(audit, shown, rest)


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


@task(name="audit", task_run_name="audit-batch-{audit[batch_id]}", cache_policy=NO_CACHE)
def publish_audit(audit: dict, run_id: str) -> str:
    """The audit onto the batch's MLflow run (Markdown and JSON, every request) and as Prefect artifacts (the audit
    with its requests capped, and a table of the ladder's attempts); returns the MLflow Markdown."""
    markdown = log_audit(audit, run_id)
    batch_id = audit["batch_id"]
    create_markdown_artifact(audit_markdown(audit), key=artifact_key(batch_id),
                             description=f"audit of deletion batch {batch_id}")
    outcome = audit["outcome"].split(":")[0]  # "promoted" or "no change" (its reason is in the audit)
    create_table_artifact(ladder_rows(audit), key=artifact_key(batch_id, "ladder"),
                          description=f"ladder of deletion batch {batch_id} ({outcome}). {LADDER_LEGEND}")
    return markdown


@task(name="step-times", task_run_name="step-times-batch-{batch_id}", cache_policy=NO_CACHE)
def publish_step_times(batch_id: int, steps: dict[str, float]) -> None:
    """The batch's step table (the ledger's, once every step ran) as a Prefect table artifact. Published after the
    batch ended, its requests done: a failure here is logged, never a failed batch."""
    try:
        create_table_artifact(step_rows(steps), key=artifact_key(batch_id, "steps"),
                              description=f"seconds per step of deletion batch {batch_id}")
    except Exception as exc:  # the batch is done; the table is a view of the ledger, which keeps the numbers
        get_run_logger().warning("batch %d: step-times artifact not published: %s", batch_id, exc)
