"""How the batch's heavy steps are carried out: the `BatchSteps` protocol (as iau_core.recipe.Steps is for the
recipe) and its plain implementation, `PlainSteps`, which `iau nightly` runs in-process. The deployment's flow
(flows/nightly.py) implements the same protocol with Prefect tasks over the same functions below, so both run the
one state machine of ops/batch.py and compute the same thing; they differ in how a step is shown and logged.

`after_step` is where a test stops the batch (tests kill the process right after a named step to check that a
rerun finishes it exactly once); production implementations do nothing there.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from iau_core.deletion import INCONCLUSIVE, GateResult, batch_unlearning, evaluate_gate
from iau_core.recipe import model_builder
from iau_core.unlearning import MethodResult, UnlearningTask, run_method
from reporting.tables import audit_report
from stores import tracking
from stores.artifacts import load_attacks
from stores.champion import Champion, cached_summed_gradient
from stores.data import ensure_data
from stores.project import RunContext


class BatchSteps(Protocol):
    log: logging.Logger | logging.LoggerAdapter
    started_by: str  # who runs the batch, for the lock's owner, the audit and the run's tags
    flow_run_id: str | None  # the Prefect flow run, when Prefect runs the steps

    def ensure_data(self, root: Path) -> str: ...

    def unlearn(self, ctx: RunContext, champion: Champion, ids: list[int], method: str, run_id: str) -> MethodResult:
        ...

    def gate(self, ctx: RunContext, champion: Champion, candidate: MethodResult, ids: list[int],
             run_id: str) -> GateResult: ...

    def publish_audit(self, audit: dict, run_id: str) -> str: ...

    def after_step(self, name: str) -> None: ...


class PlainSteps:
    """The steps as plain calls in this process (`iau nightly`): no Prefect server, logs to the `ops` logger."""

    def __init__(self, started_by: str | None = None) -> None:
        self.log = logging.getLogger("ops.batch")
        self.started_by = started_by or f"iau nightly (pid {os.getpid()})"
        self.flow_run_id = None

    def ensure_data(self, root: Path) -> str:
        return ensure_data(root)

    def unlearn(self, ctx: RunContext, champion: Champion, ids: list[int], method: str, run_id: str) -> MethodResult:
        return unlearn_batch(ctx, champion, ids, method, run_id, self.log)

    def gate(self, ctx: RunContext, champion: Champion, candidate: MethodResult, ids: list[int],
             run_id: str) -> GateResult:
        return gate_candidate(ctx, champion, candidate, ids, run_id, self.log)

    def publish_audit(self, audit: dict, run_id: str) -> str:
        return log_audit(audit, run_id)

    def after_step(self, name: str) -> None:
        pass


def unlearn_batch(ctx: RunContext, champion: Champion, forget_ids: list[int], method: str, run_id: str,
                  log: logging.Logger | logging.LoggerAdapter) -> MethodResult:
    """A method of the unlearning registry from the champion (IAU with D's cached summed gradient when the
    champion has it), or `retrain`: the GR recipe from scratch on D_r. Recorded on the batch's MLflow run with the
    method's prefix."""
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


def gate_candidate(ctx: RunContext, champion: Champion, candidate: MethodResult, forget_ids: list[int], run_id: str,
                   log: logging.Logger | logging.LoggerAdapter) -> GateResult:
    """The new model against the champion on the batch's records (iau_core.deletion.evaluate_gate), judged by the
    headline attack (attacks.headline) of the champion's reference-attack run; recorded on the batch's run."""
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
    log.info("gate for %s: %s (privacy %s)", candidate.method, "passed" if result.passed else "; ".join(result.reasons),
             result.privacy_verdict)
    return result


def log_audit(audit: dict, run_id: str) -> str:
    """The audit onto the batch's MLflow run, as Markdown and JSON; returns the Markdown."""
    markdown = audit_report(audit)
    name = f"audit/batch-{audit['batch_id']}"
    tracking.log_text(run_id, markdown, f"{name}.md")
    tracking.log_text(run_id, json.dumps(audit, indent=2, default=str), f"{name}.json")
    return markdown


ATTEMPT_COLUMNS = ("accepted", "privacy_verdict", "forget_auc_champion", "forget_auc_candidate", "auc_threshold",
                   "val_acc_drop", "seconds")


def attempt_rows(gates: dict[str, dict]) -> list[dict]:
    """One row per rung the batch tried, in order: the method, whether it was accepted, the gate's numbers and
    the seconds its unlearning took (absent from batches gated before the ladder)."""
    return [{"method": method, **{c: result.get(c) for c in ATTEMPT_COLUMNS}} for method, result in gates.items()]
