"""Models that are expensive and reusable: the deployed (base) model and the attacker's reference models.

Each is looked up in MLflow by a content key (data version + the params that shape it + the code version of
iau_core) and trained only when no finished run has it, so a second `make run` with unchanged data, params
and code reuses both, and a change to any of them trains again. Reading them back: stores/artifacts.py.

A sharded model (training.shards > 1, iau_core/sharding.py) trains as one task per shard (`shard_training`),
submitted to the flow's task runner: Dask's workers under `execution: dask` when the flow passes its runner,
else the flow's thread pool, the shards' threads sharing the cores. Its checkpoints go onto the model's run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner
from torch import nn

from iau_core.attacks.references import rebuild_reference_model
from iau_core.models import shard_seed
from iau_core.recipe import fit_attacks, member_builder, model_builder, train_original, train_references
from iau_core.runtime import prepare_process
from iau_core.sharding import (
    assemble,
    checkpoints_from_payloads,
    checkpoints_of,
    cpu_state,
    members_of,
    shard_payload,
    sharded_report,
    slice_positions,
    train_shard,
)
from iau_core.training import Progress, TrainReport
from stores import tracking
from stores.artifacts import ModelRef, attack_file, log_checkpoints
from stores.project import RunContext


@task(name="shard-training", task_run_name="shard-{shard}-seed{ctx.params.seed}", cache_policy=NO_CACHE)
def shard_training(ctx: RunContext, shard: int, initial: dict[str, torch.Tensor]) -> dict:
    """Train one shard's network from its `initial` weights on its slices, one after another
    (iau_core.sharding.train_shard); returns its checkpoints as sharding.shard_payload (CPU tensors), which the
    caller assembles. The caller draws the initial weights: torch's global generator, which initialisation
    draws from, is shared by the threads of a process."""
    prepare_process(ctx.params.threads)  # maybe a fresh Dask worker process: its share of the cores
    log = get_run_logger()
    params, bundle = ctx.params, ctx.bundle()
    member = member_builder(params, bundle)(shard_seed(params.seed, shard))
    member.load_state_dict(initial)
    member.to(ctx.device)
    positions = slice_positions(bundle.train.ids, params.training.shards, params.training.slices)[shard]
    history = train_shard(member, bundle.train, positions, bundle.val, params.training, ctx.device, params.seed,
                          shard, progress=lambda line: log.info("shard %d: %s", shard, line))
    return shard_payload(params.seed, params.training.slices, shard, history)


def train_deployed(ctx: RunContext, progress: Progress, runner: TaskRunner | None = None) -> tuple[nn.Module,
                                                                                                 TrainReport]:
    """The deployed recipe's model on all of D: train_original for one network; a sharded one as one
    shard_training task per shard, on `runner` (the flow's Dask runner) or the flow's own task runner (threads),
    or one after another outside a flow; assembled with its checkpoints attached."""
    params = ctx.params
    if params.training.shards == 1 and params.training.slices == 1:
        return train_original(params, ctx.bundle(), ctx.device, progress)
    start, bundle = time.perf_counter(), ctx.bundle()  # loaded once here, before the shards' threads share it
    model = model_builder(params, bundle)(params.seed)
    jobs = [{"ctx": ctx, "shard": s, "initial": cpu_state(member)} for s, member in enumerate(members_of(model))]
    if runner is not None:
        payloads = [f.result() for f in [runner.submit(shard_training, job) for job in jobs]]
    elif FlowRunContext.get() is not None:
        payloads = [f.result() for f in [shard_training.submit(**job) for job in jobs]]
    else:
        payloads = [shard_training.fn(**job) for job in jobs]
    checkpoints = checkpoints_from_payloads(payloads)
    model = assemble(model, checkpoints)
    report = sharded_report(model, checkpoints.shards, params.training, bundle.val, ctx.device,
                            time.perf_counter() - start)
    progress(f"{params.training.shards} shards x {params.training.slices} slices: {report.epochs_run} shard-slice "
             f"epochs, ensemble val acc {report.best_val_acc:.2f}%, {report.seconds:.0f}s")
    return model, report


@task(name="base-model", task_run_name="{kind}-model-seed{ctx.params.seed}", cache_policy=NO_CACHE)
def base_model(ctx: RunContext, kind: str = "base", register: bool = True,
               runner: TaskRunner | None = None) -> ModelRef:
    """Train the deployed model with the GR loss (or reuse it) and register it as a model version.

    kind="base-no-gr" with ctx's gr_alpha set to 0 gives the comparison model of the gradient-norm plot; it is
    not registered, since it is never deployed. `runner`: where a sharded model's shards train (train_deployed)."""
    key = tracking.cache_key(kind, ctx.data_version, ctx.params, ("data", "model", "training"))
    log = get_run_logger()
    found = tracking.find_finished_run(ctx.experiment_id, kind, key)
    if found:
        log.info("reusing %s model of seed %s from run %s", kind, ctx.params.seed, found)
        return ModelRef(found, tracking.MlflowClient().get_run(found).data.tags["model_uri"])
    tags = {"kind": kind, "cache_key": key, "data_version": ctx.data_version, "seed": str(ctx.params.seed),
            "git_commit": tracking.git_commit(ctx.repo_root)}
    name = f"{kind}-model-seed{ctx.params.seed}"
    with tracking.run(ctx.experiment_id, name, tags, repo_root=ctx.repo_root) as run_id:
        bundle = ctx.bundle()
        model, report = train_deployed(ctx, lambda line: log.info("%s: %s", kind, line), runner)
        tracking.log_params(run_id, tracking.flatten(ctx.params))
        tracking.log_data_version(run_id, ctx.params.data.dataset.name, ctx.data_version, "data.dvc")
        tracking.log_metrics(run_id, {"epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                                      "stopped_early": float(report.stopped_early),
                                      "best_val_acc": report.best_val_acc, "train_seconds": report.seconds})
        registered = ctx.params.tracking.registered_model if register else None
        described = (f"{kind}: trained with gr_alpha={ctx.params.training.gr_alpha}, seed {ctx.params.seed}, data "
                     f"version {ctx.data_version} (run {run_id}, `make run`)")
        uri = tracking.log_model(run_id, model, bundle.test.x[:2], registered, described)
        log_checkpoints(run_id, checkpoints_of(model))
        tracking.set_tags(run_id, {"model_uri": uri})
    return ModelRef(run_id, uri)


def reference_attack_key(ctx: RunContext) -> str:
    """The content key of the attacker's models: they follow the data split only, not the repeat's seed."""
    attacker = ctx.params.for_seed(ctx.params.data.split_seed)
    return tracking.cache_key("reference-attack", ctx.data_version, attacker,
                              ("data", "model", "training", "mia", "lira", "rmia"))


@task(name="reused-reference-attack", cache_policy=NO_CACHE)
def reused_reference_attack(ctx: RunContext) -> str | None:
    """The run holding the fitted attacks of these data and params, if one finished before (else None)."""
    return tracking.find_finished_run(ctx.experiment_id, "reference-attack", reference_attack_key(ctx))


@task(name="reference-attack", cache_policy=NO_CACHE)
def reference_attack(ctx: RunContext, trained: list[dict[str, torch.Tensor]] | None = None) -> str:
    """Train the attacker's reference models on the shadow pool and fit every registered attack on them (the
    paper's shadow attack, offline LiRA, offline RMIA), or reuse them; returns the run id that holds the fitted attacks.

    `trained`: the reference models' weights in index order, trained elsewhere (tasks/references.py, one task
    each on a Dask cluster); None trains them here, one after another."""
    attacker = ctx.params.for_seed(ctx.params.data.split_seed)  # the attacker's models follow the data split only
    key = reference_attack_key(ctx)
    log = get_run_logger()
    found = tracking.find_finished_run(ctx.experiment_id, "reference-attack", key)
    if found:
        log.info("reusing the reference models' attacks from run %s", found)
        return found
    tags = {"kind": "reference-attack", "cache_key": key, "data_version": ctx.data_version,
            "git_commit": tracking.git_commit(ctx.repo_root)}
    with tracking.run(ctx.experiment_id, "reference-attack", tags, repo_root=ctx.repo_root) as run_id:
        bundle = ctx.bundle()
        if trained is None:
            references = train_references(attacker, bundle, ctx.device, log.info)
        else:
            build = member_builder(attacker, bundle)  # the attacker's models are single networks
            references = [rebuild_reference_model(bundle.shadow_pool, build, i, attacker.data.split_seed, state)
                          for i, state in enumerate(trained)]
        attacks, report = fit_attacks(attacker, bundle, references, ctx.device)
        tracking.log_params(run_id, tracking.flatten(attacker))
        tracking.log_data_version(run_id, attacker.data.dataset.name, ctx.data_version, "data.dvc")
        metrics = {"attack_train_acc": report.attack_train_acc, "attack_epochs": report.attack_epochs,
                   "num_reference": len(references)}
        for i, (train_acc, val_acc) in enumerate(zip(report.shadow_train_acc, report.shadow_val_acc, strict=True)):
            metrics |= {f"shadow{i}_train_acc": train_acc, f"shadow{i}_nonmember_acc": val_acc}
        tracking.log_metrics(run_id, metrics)
        tracking.log_state_dict(run_id, attacks.shadow.attack)
        with tempfile.TemporaryDirectory() as tmp:
            for name, attack in attacks.items():  # the shadow attack's weights are the run's state_dict
                if name != "shadow" and attack.arrays():
                    path = Path(tmp) / attack_file(name)
                    np.savez(path, **attack.arrays())
                    tracking.MlflowClient().log_artifact(run_id, str(path))
    return run_id
