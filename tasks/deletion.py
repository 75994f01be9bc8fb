"""The steps of one deletion batch, as the nightly flow composes them: unlearn (a rung of nightly.ladder from the
champion, or retrain on the retained data), gate, and the audit report. Ledger and registry state changes stay
in the flow, where their order is visible; these tasks compute and record to MLflow.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from iau_core.deletion import INCONCLUSIVE, GateResult, batch_unlearning, evaluate_gate
from iau_core.recipe import model_builder
from iau_core.unlearning import MethodResult, UnlearningTask, run_method
from reporting.tables import audit_report
from stores import tracking
from stores.artifacts import load_attacks
from stores.champion import Champion, cached_summed_gradient
from stores.project import RunContext


@task(name="unlearn-batch", task_run_name="{method}-batch", cache_policy=NO_CACHE)
def unlearn_batch(ctx: RunContext, champion: Champion, forget_ids: list[int], method: str,
                  run_id: str) -> MethodResult:
    """A method of the unlearning registry from the champion (IAU with D's cached summed gradient when the
    champion has it), or `retrain`: the GR recipe from scratch on D_r. Recorded on the batch's MLflow run with the
    method's prefix."""
    log = get_run_logger()
    bundle = ctx.bundle()
    forget, retain = bundle.train.partition(np.asarray(forget_ids))
    if len(forget) != len(forget_ids):
        raise ValueError(f"{len(forget_ids) - len(forget)} of the batch's ids are not in the current training data")
    cache = cached_summed_gradient(champion, bundle.train, ctx.device) if method == "iau" else None
    if method == "iau" and cache is None:
        log.warning("the champion has no stored gradient over this D: the IAU step makes one pass over D_r")
    task_ = UnlearningTask(model=champion.model, retain=retain.to(ctx.device), forget=forget.to(ctx.device),
                           val=bundle.val.to(ctx.device), build_model=model_builder(ctx.params, bundle),
                           training=ctx.params.training, unlearning=batch_unlearning(ctx.params), device=ctx.device,
                           seed=ctx.params.seed, progress=lambda line: log.info("%s: %s", method, line),
                           summed_gradient=cache)
    run = run_method(method, task_)
    tracking.log_params(run_id, {f"{method}.{k}": str(v) for k, v in run.choices.items()})
    tracking.log_metrics(run_id, {f"{method}.unlearn_seconds": run.seconds})
    log.info("%s on %d records: %.2f s", method, len(forget), run.seconds)
    return replace(run, run_id=run_id)


@task(name="gate", task_run_name="gate-{candidate.method}", cache_policy=NO_CACHE)
def gate(ctx: RunContext, champion: Champion, candidate: MethodResult, forget_ids: list[int],
         run_id: str) -> GateResult:
    """The new model against the champion on the batch's records (iau_core.deletion.evaluate_gate), judged by the
    headline attack (attacks.headline) of the champion's reference-attack run."""
    bundle = ctx.bundle()
    forget, _ = bundle.train.partition(np.asarray(forget_ids))
    name = ctx.params.attacks.headline
    attack = load_attacks(ctx, champion.attack_run_id)[name]
    result = evaluate_gate(champion.model, candidate.model, forget, bundle.val, bundle.test, attack,
                           ctx.params.nightly.gate, ctx.device, ctx.params.seed, name)
    prefix = f"gate.{candidate.method}"
    metrics = {f"{prefix}.passed": float(result.passed), f"{prefix}.val_acc_drop": result.val_acc_drop,
               f"{prefix}.forget_auc": result.forget_auc_candidate,
               f"{prefix}.forget_auc_champion": result.forget_auc_champion,
               f"{prefix}.auc_threshold": result.auc_threshold, f"{prefix}.detectable_shift": result.detectable_shift,
               f"{prefix}.privacy_inconclusive": float(result.privacy_verdict == INCONCLUSIVE)}
    if name == "lira":  # the keys the gate wrote before the attack became a setting (docs/metrics.md)
        metrics |= {f"{prefix}.forget_lira_auc": result.forget_auc_candidate,
                    f"{prefix}.forget_lira_auc_champion": result.forget_auc_champion,
                    f"{prefix}.lira_auc_threshold": result.auc_threshold}
    tracking.log_metrics(run_id, metrics)
    tracking.set_tags(run_id, {f"{prefix}.privacy_verdict": result.privacy_verdict, f"{prefix}.attack": name})
    log = get_run_logger()
    log.info("gate for %s: %s (privacy %s)", candidate.method, "passed" if result.passed else "; ".join(result.reasons),
             result.privacy_verdict)
    return result


@task(name="audit", cache_policy=NO_CACHE)
def publish_audit(audit: dict, run_id: str) -> str:
    """The audit onto the batch's MLflow run (Markdown and JSON) and as Prefect artifacts (the audit, and a table
    of the ladder's attempts); returns the Markdown."""
    markdown = audit_report(audit)
    name = f"audit/batch-{audit['batch_id']}"
    tracking.log_text(run_id, markdown, f"{name}.md")
    tracking.log_text(run_id, json.dumps(audit, indent=2, default=str), f"{name}.json")
    create_markdown_artifact(markdown, key=f"deletion-batch-{audit['batch_id']}",
                             description=f"audit of deletion batch {audit['batch_id']}")
    create_table_artifact(attempt_rows(audit["gates"]), key=f"deletion-batch-{audit['batch_id']}-ladder",
                          description=f"deletion batch {audit['batch_id']}: {audit['outcome']}")
    return markdown


ATTEMPT_COLUMNS = ("accepted", "privacy_verdict", "forget_auc_champion", "forget_auc_candidate", "auc_threshold",
                   "val_acc_drop", "seconds")


def attempt_rows(gates: dict[str, dict]) -> list[dict]:
    """One row per rung the batch tried, in order: the method, whether it was accepted, the gate's numbers and
    the seconds its unlearning took (absent from batches gated before the ladder)."""
    return [{"method": method, **{c: result.get(c) for c in ATTEMPT_COLUMNS}} for method, result in gates.items()]
