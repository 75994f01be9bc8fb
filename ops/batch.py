"""The nightly deletion batch as plain functions over a Project: every pending request, unlearned from the
champion, gated, promoted, forgotten by the data too, and audited. `iau nightly` runs it in-process with
ops.batch_steps.PlainSteps; the deployment deletion-batch/nightly (flows/nightly.py) with Prefect tasks as steps.

    lock (the caller's) -> claim the pending requests (or resume the batch a killed run left) -> data check
      -> preconditions (data layout, the ids in D, the DVC remote, the champion's roles) -> champion
      -> the ladder (nightly.ladder): each method in cost order unlearns from the champion and is gated, the
         first the gate accepts wins; retraining on D_r is the last rung, and the only one when a request is high
         tier or drift limits are reached (on a sharded champion `sisa` is the exact rung just before it, and
         goes first then: its shards retrained without the records) -> register the version (or, when the
         winning step changed nothing, keep the champion) -> forget the records in the DVC data -> champion alias
      -> audit -> requests done
      -> D's gradient cached -> the new version's servable copy (MLflow's pt2 export)

Exactly once: the ledger claims requests in one transaction; a version is registered with its batch id in the
same call, so a rerun after a kill finds it and goes on from there instead of unlearning again (a batch that keeps
the champion records that in the ledger instead); every later step (data, alias, audit, ledger) is idempotent, and
reads the batch's parent from the ledger, never from the alias it may already have moved.
Until then a failure returns the requests to pending; after, the batch stays open and the next run finishes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from torch import nn

from iau_core.deletion import (
    Attempt,
    GateResult,
    Lineage,
    climb_ladder,
    escalation_reason,
    is_exact,
    rejection_reason,
    rungs,
)
from iau_core.selection import forget_set_sha256
from iau_core.sharding import checkpoints_of
from iau_core.unlearning import MethodResult
from ledger import Batch, Ledger
from ops.batch_steps import BatchSteps
from ops.drift import counters_after
from ops.project import Project, connected
from stores import registry, tracking
from stores.artifacts import log_checkpoints
from stores.champion import Champion, champion_context, load_champion, store_summed_gradient
from stores.data import forget_records, forgetting_problems
from stores.project import RunContext
from stores.reconcile import RegistryDiverged, reconcile

GATES_FILE = "gates.json"


class GateFailed(RuntimeError):
    """Every rung failed the gate, retraining on the retained data too: nothing promoted, requests back to pending."""


class PreconditionFailed(RuntimeError):
    """Forgetting could not finish (data layout, ids, remote, roles): nothing unlearned, requests pending."""


@dataclass(frozen=True)
class BatchOutcome:
    """What a nightly run did: nothing ('no-op'), a new champion ('promoted'), or the champion kept ('no-change')."""
    status: str
    champion: str  # the model serving after the run (models:/<name>/<version>)
    batch_id: int | None = None
    outcome: str = ""
    method: str | None = None
    data_version: str | None = None
    requests: int = 0
    mlflow_run_id: str | None = None
    gates: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def process_pending(project: Project, steps: BatchSteps) -> BatchOutcome:
    """Run the batch (see the module docstring). The caller holds the ledger's nightly lock."""
    project = connected(project)
    ctx, ledger, name = project.run_context(), project.ledger, project.params.tracking.deployed_model
    # the registry must still hold the ledger's champion, else the batch would register a version the ledger
    # then refuses (after moving the alias and the data): refuse first, releasing what never got registered
    if problem := reconcile(ledger, name, release_unregistered=False).problem:
        raise RegistryDiverged(problem)
    deployed = registry.champion(name)  # none: a clear error, nothing claimed
    if not registry.servable(deployed):  # a run killed after its batch finished left the export undone
        export(ctx, deployed, load_champion(ctx, deployed).model, steps)
    batch = ledger.open_batch(deployed.version, ctx.data_version, project.params.nightly.ladder[0])
    if batch is None:
        steps.log.info("no pending deletion requests: nothing to do (champion %s stays)", deployed.uri)
        return BatchOutcome("no-op", deployed.uri)
    steps.log.info("%s batch %d: %d request(s)", "resuming" if batch.resumed else "claimed", batch.id,
                   len(batch.sample_ids))
    # a resumed batch may have moved the alias already (killed after promote): its parent is the ledger's
    parent = batch_parent(name, batch, deployed)
    own = registry.find(name, "batch_id", str(batch.id))
    try:
        return run_batch(ctx, ledger, batch, parent, own, steps)
    except BaseException as exc:
        end_failed_runs(ctx, batch.id, steps)
        kept = ledger.batch(batch.id).model_version is not None  # keep_champion: past the point of no return
        if not kept and registry.find(name, "batch_id", str(batch.id)) is None:
            ledger.release_batch(batch.id, f"{type(exc).__name__}: {exc}")
            steps.log.error("batch %d failed before a version was registered; its requests are pending again",
                            batch.id)
        raise


def batch_parent(name: str, batch: Batch, deployed: registry.Version) -> registry.Version:
    """The version the batch unlearns from: the one the ledger recorded when it claimed the requests."""
    if batch.parent_model_version == deployed.version:
        return deployed
    return registry.version(name, batch.parent_model_version)


def run_batch(ctx: RunContext, ledger: Ledger, batch: Batch, parent: registry.Version,
              own: registry.Version | None, steps: BatchSteps) -> BatchOutcome:
    ids = sorted(int(i) for i in batch.sample_ids)
    run_id = batch_run(ctx, batch.id, parent, steps)
    clock = StepClock(ledger, batch.id, steps)
    candidate: MethodResult | None = None  # in memory only when this run unlearned it
    champion: Champion | None = None  # likewise: the gradient refresh starts from its cache
    kept = ledger.batch(batch.id).model_version  # set by keep_champion: nothing registered, the champion stays
    if own is None and kept is None:  # nothing irreversible yet: unlearn, gate and register
        with clock("data"):
            steps.ensure_data(ctx.repo_root)
        with clock("preconditions"):  # everything forgetting needs, before anything irreversible
            check_preconditions(ctx, parent, ids)
        with clock("champion"):
            champion = load_champion(ctx, parent)
            # unlearned in its own shard layout, whatever params.yaml says (stores.champion.champion_context says why)
            ctx, layout_note = champion_context(ctx, champion)
            if layout_note:
                steps.log.warning("batch %d: %s", batch.id, layout_note)
                tracking.set_tags(run_id, {"shard_layout": layout_note})
        candidate, gates = unlearn_and_gate(ctx, ledger, batch, champion, ids, run_id, clock, steps)
        with clock("register"):
            tracking.log_text(run_id, json.dumps(gates, indent=2), GATES_FILE)
            if gates[candidate.method]["unchanged"]:  # a new version would be the champion under another number
                ledger.keep_champion(batch.id, parent.version, candidate.method, gates)
            else:
                own = register(ctx, batch, parent, champion, candidate, ids, run_id)
    else:  # a rerun after registration (or keep_champion): the gates were recorded then
        gates = json.loads(tracking.read_text(run_id, GATES_FILE))
    with clock("forget-data"):
        new_data = forget_records(ctx.repo_root, ctx.params.data.dataset.name, ids, f"batch {batch.id}")
        # the serving version goes with the new data (load_champion checks it); a kept champion's run keeps the
        # tags of the data its weights saw, which the purge reads
        registry.tag(own or parent, {"data_version": new_data})
    if own is not None:
        with clock("promote"):
            registry.promote(own)
    serving = own or parent  # the model that excludes the records from now on
    recorded = ledger.batch(batch.id)
    method = own.tags["method"] if own is not None else recorded.method
    outcome = "promoted" if own is not None else (
        f"no change: the champion already shows no more membership of these records than the gate can detect, "
        f"and {method}'s step left its parameters unchanged; the requests are done on {parent.uri}, no new "
        "version was registered")
    winner = gates.get(method, {})
    audit = {"batch_id": batch.id, "outcome": outcome, "method": method, "resumed": batch.resumed,
             # exact: the serving model never saw the records (retrained, or sisa's shards retrained without them)
             "exact": own is not None and is_exact(method),
             "shards_retrained": winner.get("shards_retrained"), "retrained_shards": winner.get("retrained_shards"),
             "escalation": recorded.escalation_reason or None, "ladder": list(ctx.params.nightly.ladder),
             "parent_model_version": parent.uri, "model_version": serving.uri,
             "parent_data_version": recorded.parent_data_version, "data_version": new_data,
             "mlflow_run_id": run_id, "prefect_flow_run_id": steps.flow_run_id or "none (run in-process)",
             "started_by": steps.started_by, "gates": gates,
             "steps": recorded.steps,
             "requests": [r.as_json() for r in ledger.list_requests() if r.batch_id == batch.id]}
    with clock("audit"):
        steps.publish_audit(audit, run_id)
    with clock("finish"):
        drift = counters_after(ledger.current_champion(), method, len(ids), kept=own is None)
        ledger.finish_batch(batch.id, serving.version, new_data, method, gates, run_id, drift)
        tracking.set_tags(run_id, {"model_version": serving.uri, "data_version_after": new_data,
                                   "outcome": "promoted" if own is not None else "no-change"})
        tracking.finish(run_id)
    # off the critical path from here: the requests are done already
    after = replace(ctx, data_version=new_data)
    model = serving_model(after, serving, candidate)
    with clock("cache-gradient"):
        bundle = after.bundle()
        # on the serving model's run, where the next batch looks (a kept champion's own run: D shrank under it).
        # From the champion's cache when this run unlearned from it (its D is still in memory): a sample of D
        # instead of all of it (nightly.gradient_refresh); a rerun after a kill makes the full pass.
        store_summed_gradient(serving.run_id, model, bundle.train, bundle.val, after, champion,
                              ctx.bundle().train if champion is not None else None)
    if own is not None:
        with clock("export-model"):
            export(after, own, model, steps)
    steps.log.info("batch %d: %s (%s), %s, data version %s", batch.id, serving.uri, method,
                   "promoted" if own is not None else "no change, the champion stays", new_data)
    return BatchOutcome("promoted" if own is not None else "no-change", serving.uri, batch.id, outcome, method,
                        new_data, len(ids), run_id, gates)


def register(ctx: RunContext, batch: Batch, parent: registry.Version, champion: Champion, candidate: MethodResult,
             ids: list[int], run_id: str) -> registry.Version:
    """The candidate as a new version of the deployed model, tagged with its batch (found again by a rerun); by its
    weights only: the servable copy is exported after the requests are done (`export`). A sharded candidate's SISA
    checkpoints go onto the run first: a rerun after a kill past registration skips this step, so they must already
    be there for the next batch's `sisa` (and the purge) to find them on the new version's run."""
    log_checkpoints(run_id, checkpoints_of(candidate.model))
    return registry.register_weights(ctx.params.tracking.deployed_model, run_id, candidate.model, candidate.method, {
        "batch_id": batch.id, "method": candidate.method, "exact": is_exact(candidate.method),
        "parent_version": parent.version,
        "parent_data_version": ctx.data_version, "reference_attack_run": champion.attack_run_id,
        "forget_set_sha256": forget_set_sha256(np.asarray(ids)), "requests": len(ids),
        "roles_fingerprint": ctx.bundle().roles_fingerprint},
        f"{candidate.method}: nightly batch {batch.id} forgets {len(ids)} request(s) from version "
        f"{parent.version} (data version {ctx.data_version}); run {run_id}")


def export(ctx: RunContext, version: registry.Version, model: nn.Module, steps: BatchSteps) -> None:
    """The version's servable copy with its signature (registry.export_servable), traced on two test records."""
    if registry.export_servable(version, model, ctx.bundle().test.x[:2]):
        steps.log.info("%s: servable copy exported (pt2)", version.uri)


def check_preconditions(ctx: RunContext, parent: registry.Version, ids: list[int]) -> None:
    """Refuse the batch, naming every cause, unless the data can forget these ids and the champion was trained
    with the roles this data version has. Raised before unlearning, so the requests go back to pending."""
    name = ctx.params.data.dataset.name
    problems = forgetting_problems(ctx.repo_root, name, ids)
    if not problems:
        bundle = ctx.bundle()
        outside = sorted(set(ids) - set(bundle.train.ids.tolist()))
        if outside:
            problems.append(f"sample ids {outside[:10]} are not in D (the training role) of data version "
                            f"{ctx.data_version}")
        trained_with = parent.tags.get("roles_fingerprint")
        if trained_with and trained_with != bundle.roles_fingerprint:
            problems.append(
                f"data version {ctx.data_version} assigns roles {bundle.roles_fingerprint[:12]} but the champion "
                f"{parent.uri} was trained on data version {parent.tags.get('data_version', '?')} with roles "
                f"{trained_with[:12]} (rows added, or data sizes or split_seed changed): `iau train` a champion for "
                "this data first")
    if problems:
        raise PreconditionFailed(f"batch refused before unlearning: {'; '.join(problems)}")


def serving_model(after: RunContext, serving: registry.Version, candidate: MethodResult | None) -> nn.Module:
    """The model now serving: the candidate this run holds (never download what this process just uploaded), or,
    on a rerun that resumed after registration (or a kept champion), its weights loaded back."""
    if candidate is not None:  # registered, or kept because its step left the champion's parameters unchanged
        return candidate.model.eval()  # as registered: log_model saved it in eval mode, on the CPU
    # read again: forget-data tagged it with the new data version, which load_champion checks
    return load_champion(after, registry.version(serving.name, serving.version)).model


def unlearn_and_gate(ctx: RunContext, ledger: Ledger, batch: Batch, champion: Champion, ids: list[int], run_id: str,
                     clock: StepClock, steps: BatchSteps) -> tuple[MethodResult, dict]:
    """The ladder (nightly.ladder) from the champion: each rung unlearned and gated in cost order until the gate
    accepts one; only its last rung, retraining, when the batch must retrain (on a sharded champion, `sisa` and then
    retraining: the exact rungs; iau_core.deletion.rungs). Returns the accepted candidate and
    every attempt's record (gates.json: method -> the gate's numbers, seconds, accepted)."""
    log = steps.log
    row = ledger.current_champion()
    lineage = Lineage(row.iau_batches_since_retrain, row.forgotten_since_retrain, row.train_size_at_retrain) \
        if row is not None and row.model_version == champion.version.version \
        else Lineage(0, 0, len(ctx.bundle().train))
    # escalated before a kill: a resumed run keeps that decision, and climbs the same exact rungs (sisa first on a
    # sharded champion) as the killed run did: ledger.escalate records the method "retrain" in either case
    if batch.method == "retrain":
        reason = batch.escalation_reason
    else:
        reason = escalation_reason(len(ids), list(batch.tiers.values()), lineage, ctx.params.nightly.drift)
        if reason:
            ledger.escalate(batch.id, reason)
            log.warning("batch %d escalated: %s", batch.id, reason)

    def attempt(method: str, rejected: list[Attempt]) -> tuple[MethodResult, GateResult, float]:
        if rejected and is_exact(method) and not any(is_exact(a.method) for a in rejected):
            # every approximate rung was rejected: the batch escalates to the first exact one (sisa, else retrain)
            why = rejection_reason(rejected)
            ledger.escalate(batch.id, why)
            log.warning("batch %d escalated: %s", batch.id, why)
        elif rejected:
            log.warning("batch %d: %s; next rung %s", batch.id, rejection_reason(rejected[-1:]), method)
        with clock(f"unlearn-{method}"):
            candidate = steps.unlearn(ctx, champion, ids, method, run_id)
        with clock(f"gate-{method}"):
            result = steps.gate(ctx, champion, candidate, ids, run_id)
        return candidate, result, candidate.seconds

    policy = ctx.params.nightly.gate.when_inconclusive
    # a sharded champion with its checkpoints: sisa is the exact rung before full retraining, and where the batch
    # must retrain (high tier, drift, or escalated before a kill) it goes first
    sharded = checkpoints_of(champion.model) is not None
    candidate, attempts = climb_ladder(rungs(ctx.params.nightly.ladder, reason, sharded=sharded), attempt, policy)
    gates = {a.method: a.as_dict() for a in attempts}
    if candidate is None:
        raise GateFailed(f"batch {batch.id}: the model retrained on the retained data failed the gate too ("
                         f"{'; '.join(attempts[-1].gate.reasons)}). Nothing was promoted; the requests are pending "
                         "again.")
    # an inconclusive privacy verdict promotes only by policy (nightly.gate.when_inconclusive), and the
    # retrained model, which has no stronger fallback, always; the verdict stays in gates.json and the audit
    accepted = attempts[-1].gate
    if not accepted.passed:
        log.warning("batch %d: %s promoted with privacy verdict %s: %s", batch.id, candidate.method,
                    accepted.privacy_verdict, "; ".join(accepted.reasons))
    return candidate, gates


class StepClock:
    """Times each step into the ledger (the audit's step table), then tells the steps it ended (a test's hook)."""

    def __init__(self, ledger: Ledger, batch_id: int, steps: BatchSteps) -> None:
        self.ledger, self.batch_id, self.steps = ledger, batch_id, steps

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.ledger.record_step(self.batch_id, name, time.perf_counter() - start)
        self.steps.after_step(name)


def end_failed_runs(ctx: RunContext, batch_id: int, steps: BatchSteps) -> None:
    """A failed attempt's MLflow run ends FAILED, not RUNNING forever; a rerun that resumes the batch reuses it and
    ends it FINISHED. Best effort: MLflow may be what failed, and the original error is the one to report."""
    try:
        client = tracking.MlflowClient()
        for run in client.search_runs([ctx.experiment_id], f"tags.kind = 'deletion-batch' and tags.batch_id = "
                                      f"'{batch_id}' and attributes.status = 'RUNNING'"):
            tracking.finish(run.info.run_id, ok=False)
    except Exception as exc:  # never hide the batch's own error behind this one
        steps.log.warning("could not mark batch %d's MLflow run FAILED: %s", batch_id, type(exc).__name__)


def batch_run(ctx: RunContext, batch_id: int, parent: registry.Version, steps: BatchSteps) -> str:
    """The batch's MLflow run: the one a killed attempt opened, or a new one."""
    client = tracking.MlflowClient()
    found = client.search_runs([ctx.experiment_id], f"tags.kind = 'deletion-batch' and tags.batch_id = '{batch_id}'")
    if found:
        return found[0].info.run_id
    tags = {"kind": "deletion-batch", "batch_id": str(batch_id), "parent_model_version": parent.uri,
            "data_version": ctx.data_version, "started_by": steps.started_by,
            **({"prefect_flow_run_id": steps.flow_run_id} if steps.flow_run_id else {}),
            "git_commit": tracking.git_commit(ctx.repo_root)}
    run_id = tracking.start_run(ctx.experiment_id, f"nightly-batch-{batch_id}", tags, repo_root=ctx.repo_root)
    tracking.log_params(run_id, tracking.flatten(ctx.params))
    tracking.log_data_version(run_id, ctx.params.data.dataset.name, ctx.data_version, "data.dvc")
    return run_id
