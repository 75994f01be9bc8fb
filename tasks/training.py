"""Models that are expensive and reusable: the deployed (base) model and the attacker's reference models.

Each is looked up in MLflow by a content key (data version + the params that shape it + the code version of
iau_core) and trained only when no finished run has it, so a second `make run` with unchanged data, params
and code reuses both, and a change to any of them trains again. Reading them back: stores/artifacts.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from iau_core.attacks.references import rebuild_reference_model
from iau_core.recipe import fit_attacks, model_builder, train_original, train_references
from stores import tracking
from stores.artifacts import ModelRef, attack_file
from stores.project import RunContext


@task(name="base-model", task_run_name="{kind}-model-seed{ctx.params.seed}", cache_policy=NO_CACHE)
def base_model(ctx: RunContext, kind: str = "base", register: bool = True) -> ModelRef:
    """Train the deployed model with the GR loss (or reuse it) and register it as a model version.

    kind="base-no-gr" with ctx's gr_alpha set to 0 gives the comparison model of the gradient-norm plot; it is
    not registered, since it is never deployed."""
    key = tracking.cache_key(kind, ctx.data_version, ctx.params, ("data", "model", "training"))
    log = get_run_logger()
    found = tracking.find_finished_run(ctx.experiment_id, kind, key)
    if found:
        log.info("reusing %s model of seed %s from run %s", kind, ctx.params.seed, found)
        return ModelRef(found, tracking.MlflowClient().get_run(found).data.tags["model_uri"])
    tags = {"kind": kind, "cache_key": key, "data_version": ctx.data_version, "seed": str(ctx.params.seed),
            "git_commit": tracking.git_commit(ctx.repo_root)}
    with tracking.run(ctx.experiment_id, f"{kind}-model-seed{ctx.params.seed}", tags) as run_id:
        bundle = ctx.bundle()
        model, report = train_original(ctx.params, bundle, ctx.device, lambda line: log.info("%s: %s", kind, line))
        tracking.log_params(run_id, tracking.flatten(ctx.params))
        tracking.log_data_version(run_id, ctx.params.data.dataset.name, ctx.data_version, "data.dvc")
        tracking.log_metrics(run_id, {"epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                                      "stopped_early": float(report.stopped_early),
                                      "best_val_acc": report.best_val_acc, "train_seconds": report.seconds})
        registered = ctx.params.tracking.registered_model if register else None
        described = (f"{kind}: trained with gr_alpha={ctx.params.training.gr_alpha}, seed {ctx.params.seed}, data "
                     f"version {ctx.data_version} (run {run_id}, `make run`)")
        uri = tracking.log_model(run_id, model, bundle.test.x[:2], registered, described)
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
    with tracking.run(ctx.experiment_id, "reference-attack", tags) as run_id:
        bundle = ctx.bundle()
        if trained is None:
            references = train_references(attacker, bundle, ctx.device, log.info)
        else:
            build = model_builder(attacker, bundle)
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
