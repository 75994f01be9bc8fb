"""The nightly deletion batch: every pending request, unlearned from the champion, gated, promoted, forgotten by
the data too, and audited. Run by `iau nightly`, by `unlearn(selection="requests")` and by the deployment
unlearn/nightly (prefect.yaml, 02:00).

    lock -> claim the pending requests (or resume the batch a killed run left) -> data check
      -> preconditions (data layout, the ids in D, the DVC remote, the champion's roles) -> champion
      -> the ladder (nightly.ladder): each method in cost order unlearns from the champion and is gated, the
         first the gate accepts wins; retraining on D_r is the last rung, and the only one when a request is high
         tier or drift limits are reached -> register the version (or, when the winning step changed nothing,
         keep the champion) -> forget the records in the DVC data -> champion alias -> audit -> requests done
      -> D's gradient cached

Exactly once: the ledger claims requests in one transaction; a version is registered with its batch id in the
same call, so a rerun after a kill finds it and goes on from there instead of unlearning again (a batch that keeps
the champion records that in the ledger instead); every later step (data, alias, audit, ledger) is idempotent.
Until then a failure returns the requests to pending; after, the batch stays open and the next run finishes it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from torch import nn

from iau_core.config import Params, load_params
from iau_core.deletion import Attempt, GateResult, Lineage, climb_ladder, escalation_reason, rejection_reason, rungs
from iau_core.runtime import prepare_process
from iau_core.selection import forget_set_sha256
from iau_core.unlearning import MethodResult
from ledger import Ledger, ledger_url
from stores import registry, tracking
from stores.champion import Champion, load_champion, store_summed_gradient
from stores.data import forget_records, forgetting_problems, recorded_version
from stores.project import RunContext, project_root
from stores.reconcile import RegistryDiverged, reconcile
from tasks.data import ensure_data_task
from tasks.deletion import gate, publish_audit, unlearn_batch

GATES_FILE = "gates.json"
FAULT_ENV = "IAU_FAULT_KILL_AFTER"  # crash tests: SIGKILL this process right after the named step


class GateFailed(RuntimeError):
    """Every rung failed the gate, retraining on the retained data too: nothing promoted, requests back to pending."""


class PreconditionFailed(RuntimeError):
    """Forgetting could not finish (data layout, ids, remote, roles): nothing unlearned, requests pending."""


class TrackingUnavailable(RuntimeError):
    """MLflow cannot be reached: nothing was claimed."""


@flow(name="deletion-batch")
def deletion_batch(params_file: str = "params.yaml", overrides: dict | None = None,
                   project_dir: str | None = None) -> dict:
    """Process every pending deletion request as one batch (see the module docstring); returns what happened."""
    root = project_root(project_dir)
    params = load_params(root / params_file, overrides)
    prepare_process(params.threads)  # here, not in a __main__: a worker's flow run must take its share too
    log = get_run_logger()
    ledger = Ledger(ledger_url(root))
    with ledger.nightly_lock(owner=f"prefect flow run {flow_run.id}"):
        ctx = RunContext(params, recorded_version(root)[0], connect(root, params), root)
        # the registry must still hold the ledger's champion, else the batch would register a version the ledger
        # then refuses (after moving the alias and the data): refuse first, releasing what never got registered
        if problem := reconcile(ledger, params.tracking.deployed_model, release_unregistered=False).problem:
            raise RegistryDiverged(problem)
        deployed = registry.champion(params.tracking.deployed_model)  # none: a clear error, nothing claimed
        batch = ledger.open_batch(deployed.version, ctx.data_version, params.nightly.ladder[0])
        if batch is None:
            log.info("no pending deletion requests: nothing to do (champion %s stays)", deployed.uri)
            return {"status": "no-op", "champion": deployed.uri}
        log.info("%s batch %d: %d request(s)", "resuming" if batch.resumed else "claimed", batch.id,
                 len(batch.sample_ids))
        own = registry.find(params.tracking.deployed_model, "batch_id", str(batch.id))
        try:
            return run_batch(ctx, ledger, batch, deployed, own)
        except BaseException as exc:
            end_failed_runs(ctx, batch.id)
            kept = ledger.batch(batch.id).model_version is not None  # keep_champion: past the point of no return
            if not kept and registry.find(params.tracking.deployed_model, "batch_id", str(batch.id)) is None:
                ledger.release_batch(batch.id, f"{type(exc).__name__}: {exc}")
                log.error("batch %d failed before a version was registered; its requests are pending again", batch.id)
            raise


def run_batch(ctx: RunContext, ledger: Ledger, batch, deployed: registry.Version,
              own: registry.Version | None) -> dict:
    ids = sorted(int(i) for i in batch.sample_ids)
    run_id = batch_run(ctx, batch.id, deployed)
    steps = StepClock(ledger, batch.id)
    candidate: MethodResult | None = None  # in memory only when this run unlearned it
    kept = ledger.batch(batch.id).model_version  # set by keep_champion: nothing registered, the champion stays
    if own is None and kept is None:  # nothing irreversible yet: unlearn, gate and register
        with steps("data"):
            ensure_data_task(str(ctx.repo_root))
        with steps("preconditions"):  # everything forgetting needs, before anything irreversible
            check_preconditions(ctx, deployed, ids)
        with steps("champion"):
            champion = load_champion(ctx, deployed)
        candidate, gates = unlearn_and_gate(ctx, ledger, batch, champion, ids, run_id, steps)
        with steps("register"):
            tracking.log_text(run_id, json.dumps(gates, indent=2), GATES_FILE)
            if gates[candidate.method]["unchanged"]:  # a new version would be the champion under another number
                ledger.keep_champion(batch.id, deployed.version, candidate.method, gates)
            else:
                own = register(ctx, batch, deployed, champion, candidate, ids, run_id)
    else:  # a rerun after registration (or keep_champion): the gates were recorded then
        gates = json.loads(tracking.read_text(run_id, GATES_FILE))
    with steps("forget-data"):
        new_data = forget_records(ctx.repo_root, ctx.params.data.dataset.name, ids, f"batch {batch.id}")
        # the serving version goes with the new data (load_champion checks it); a kept champion's run keeps the
        # tags of the data its weights saw, which the purge reads
        registry.tag(own or deployed, {"data_version": new_data})
    if own is not None:
        with steps("promote"):
            registry.promote(own)
    serving = own or deployed  # the model that excludes the records from now on
    recorded = ledger.batch(batch.id)
    method = own.tags["method"] if own is not None else recorded.method
    outcome = "promoted" if own is not None else (
        f"no change: the champion already shows no more membership of these records than the gate can detect, "
        f"and {method}'s step left its parameters unchanged; the requests are done on {deployed.uri}, no new "
        "version was registered")
    audit = {"batch_id": batch.id, "outcome": outcome, "method": method, "resumed": batch.resumed,
             "escalation": recorded.escalation_reason or None, "ladder": list(ctx.params.nightly.ladder),
             "parent_model_version": deployed.uri, "model_version": serving.uri,
             "parent_data_version": recorded.parent_data_version, "data_version": new_data,
             "mlflow_run_id": run_id, "prefect_flow_run_id": str(flow_run.id), "gates": gates,
             "steps": recorded.steps,
             "requests": [r.as_json() for r in ledger.list_requests() if r.batch_id == batch.id]}
    with steps("audit"):
        publish_audit(audit, run_id)
    with steps("finish"):
        ledger.finish_batch(batch.id, serving.version, new_data, method, gates, run_id)
        tracking.set_tags(run_id, {"model_version": serving.uri, "data_version_after": new_data,
                                   "outcome": "promoted" if own is not None else "no-change"})
        tracking.finish(run_id)
    with steps("cache-gradient"):  # off the critical path: the requests are done already
        after = replace(ctx, data_version=new_data)
        bundle = after.bundle()
        # on the serving model's run, where the next batch looks (a kept champion's own run: D shrank under it)
        store_summed_gradient(serving.run_id, new_champion_model(after, candidate), bundle.train, bundle.val, after)
    get_run_logger().info("batch %d: %s (%s), %s, data version %s", batch.id, serving.uri, method,
                          "promoted" if own is not None else "no change, the champion stays", new_data)
    return {"status": "promoted" if own is not None else "no-change", "outcome": outcome, "batch_id": batch.id,
            "model_version": serving.uri, "method": method, "data_version": new_data, "requests": len(ids),
            "mlflow_run_id": run_id, "gates": gates}


def register(ctx: RunContext, batch, deployed: registry.Version, champion: Champion, candidate: MethodResult,
             ids: list[int], run_id: str) -> registry.Version:
    """The candidate as a new version of the deployed model, tagged with its batch (found again by a rerun)."""
    tracking.log_model(run_id, candidate.model, ctx.bundle().test.x[:2])
    return registry.register(ctx.params.tracking.deployed_model, run_id, {
        "batch_id": batch.id, "method": candidate.method, "parent_version": deployed.version,
        "parent_data_version": ctx.data_version, "reference_attack_run": champion.attack_run_id,
        "forget_set_sha256": forget_set_sha256(np.asarray(ids)), "requests": len(ids),
        "roles_fingerprint": ctx.bundle().roles_fingerprint},
        f"{candidate.method}: nightly batch {batch.id} forgets {len(ids)} request(s) from version "
        f"{deployed.version} (data version {ctx.data_version}); run {run_id}")


def check_preconditions(ctx: RunContext, deployed: registry.Version, ids: list[int]) -> None:
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
        trained_with = deployed.tags.get("roles_fingerprint")
        if trained_with and trained_with != bundle.roles_fingerprint:
            problems.append(
                f"data version {ctx.data_version} assigns roles {bundle.roles_fingerprint[:12]} but the champion "
                f"{deployed.uri} was trained on data version {deployed.tags.get('data_version', '?')} with roles "
                f"{trained_with[:12]} (rows added, or data sizes or split_seed changed): `iau train` a champion for "
                "this data first")
    if problems:
        raise PreconditionFailed(f"batch refused before unlearning: {'; '.join(problems)}")


def new_champion_model(after: RunContext, candidate: MethodResult | None) -> nn.Module:
    """The promoted model: the candidate this run holds (never download what this process just uploaded), or,
    on a rerun that resumed after registration, the champion's weights loaded back."""
    if candidate is not None:
        return candidate.model.eval()  # as registered: log_model saved it in eval mode, on the CPU
    return load_champion(after, registry.champion(after.params.tracking.deployed_model)).model


def unlearn_and_gate(ctx: RunContext, ledger: Ledger, batch, champion: Champion, ids: list[int], run_id: str,
                     steps: StepClock) -> tuple[MethodResult, dict]:
    """The ladder (nightly.ladder) from the champion: each rung unlearned and gated in cost order until the gate
    accepts one; only its last rung, retraining, when the batch must retrain. Returns the accepted candidate and
    every attempt's record (gates.json: method -> the gate's numbers, seconds, accepted)."""
    log = get_run_logger()
    row = ledger.current_champion()
    lineage = Lineage(row.iau_batches_since_retrain, row.forgotten_since_retrain, row.train_size_at_retrain) \
        if row is not None and row.model_version == champion.version.version \
        else Lineage(0, 0, len(ctx.bundle().train))
    if batch.method == "retrain":  # escalated before a kill: a resumed run keeps that decision
        reason = batch.escalation_reason
    else:
        reason = escalation_reason(len(ids), list(batch.tiers.values()), lineage, ctx.params.nightly.drift)
        if reason:
            ledger.escalate(batch.id, reason)
            log.warning("batch %d escalated: %s", batch.id, reason)

    def attempt(method: str, rejected: list[Attempt]) -> tuple[MethodResult, GateResult, float]:
        if rejected and method == "retrain":  # every cheaper rung was rejected: the batch escalates
            why = rejection_reason(rejected)
            ledger.escalate(batch.id, why)
            log.warning("batch %d escalated: %s", batch.id, why)
        elif rejected:
            log.warning("batch %d: %s; next rung %s", batch.id, rejection_reason(rejected[-1:]), method)
        with steps(f"unlearn-{method}"):
            candidate = unlearn_batch(ctx, champion, ids, method, run_id)
        with steps(f"gate-{method}"):
            result = gate(ctx, champion, candidate, ids, run_id)
        return candidate, result, candidate.seconds

    policy = ctx.params.nightly.gate.when_inconclusive
    candidate, attempts = climb_ladder(rungs(ctx.params.nightly.ladder, reason), attempt, policy)
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
    """Times each step into the ledger (the audit's step table); the crash tests kill the process after one."""

    def __init__(self, ledger: Ledger, batch_id: int) -> None:
        self.ledger, self.batch_id = ledger, batch_id

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.ledger.record_step(self.batch_id, name, time.perf_counter() - start)
        if os.environ.get(FAULT_ENV) == name:
            os.kill(os.getpid(), signal.SIGKILL)


def connect(root: Path, params: Params) -> str:
    """MLflow's experiment id, or a clear TrackingUnavailable before anything is claimed."""
    try:
        return tracking.configure(root, params.tracking.experiment)
    except Exception as exc:  # connection refused, DNS, HTTP errors: whatever the client raises
        raise TrackingUnavailable(f"MLflow tracking at {tracking.display_uri(tracking.tracking_uri(root))} is "
                                  f"unreachable ({type(exc).__name__}); no request was claimed") from None


def end_failed_runs(ctx: RunContext, batch_id: int) -> None:
    """A failed attempt's MLflow run ends FAILED, not RUNNING forever; a rerun that resumes the batch reuses it and
    ends it FINISHED. Best effort: MLflow may be what failed, and the original error is the one to report."""
    try:
        client = tracking.MlflowClient()
        for run in client.search_runs([ctx.experiment_id], f"tags.kind = 'deletion-batch' and tags.batch_id = "
                                      f"'{batch_id}' and attributes.status = 'RUNNING'"):
            tracking.finish(run.info.run_id, ok=False)
    except Exception as exc:  # never hide the batch's own error behind this one
        get_run_logger().warning("could not mark batch %d's MLflow run FAILED: %s", batch_id, type(exc).__name__)


def batch_run(ctx: RunContext, batch_id: int, deployed: registry.Version) -> str:
    """The batch's MLflow run: the one a killed attempt opened, or a new one."""
    client = tracking.MlflowClient()
    found = client.search_runs([ctx.experiment_id], f"tags.kind = 'deletion-batch' and tags.batch_id = '{batch_id}'")
    if found:
        return found[0].info.run_id
    tags = {"kind": "deletion-batch", "batch_id": str(batch_id), "parent_model_version": deployed.uri,
            "data_version": ctx.data_version, "prefect_flow_run_id": str(flow_run.id),
            "git_commit": tracking.git_commit(tracking.REPO_ROOT)}
    run_id = tracking.start_run(ctx.experiment_id, f"nightly-batch-{batch_id}", tags)
    tracking.log_params(run_id, tracking.flatten(ctx.params))
    tracking.log_data_version(run_id, ctx.params.data.dataset.name, ctx.data_version, "data.dvc")
    return run_id
