"""The deployed model: trained once with the GR recipe (`iau train`), then replaced by each nightly batch.
What a champion carries and how it is loaded back is stores/champion.py."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner

from iau_core.sharding import checkpoints_of
from stores import registry, tracking
from stores.artifacts import log_checkpoints
from stores.champion import store_summed_gradient
from stores.project import RunContext
from tasks.training import train_deployed


@task(name="train-champion", cache_policy=NO_CACHE)
def train_champion(ctx: RunContext, attack_run_id: str, runner: TaskRunner | None = None) -> registry.Version:
    """Train the deployed model on all of the current D with the GR recipe, register it and make it champion.
    Then, off the critical path, store D's summed gradient at its weights for the first deletion batch. A sharded
    champion (training.shards > 1) trains one task per shard (tasks.training.train_deployed, on `runner` when
    given) and its SISA checkpoints are stored on its run beside the weights."""
    log = get_run_logger()
    bundle = ctx.bundle()
    tags = {"kind": "champion-training", "data_version": ctx.data_version,
            "git_commit": tracking.git_commit(ctx.repo_root)}
    with tracking.run(ctx.experiment_id, "champion-training", tags, repo_root=ctx.repo_root) as run_id:
        model, report = train_deployed(ctx, lambda line: log.info("champion: %s", line), runner)
        tracking.log_params(run_id, tracking.flatten(ctx.params))
        tracking.log_data_version(run_id, ctx.params.data.dataset.name, ctx.data_version, "data.dvc")
        tracking.log_metrics(run_id, {"epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                                      "best_val_acc": report.best_val_acc, "train_seconds": report.seconds,
                                      "train_size": len(bundle.train)})
        tracking.log_model(run_id, model, bundle.test.x[:2])
        log_checkpoints(run_id, checkpoints_of(model))
        if bundle.normalization is not None:  # auto's statistics, to standardize what the model is served
            tracking.log_text(run_id, bundle.normalization.model_dump_json(indent=1), "normalization.json")
        version = registry.register(ctx.params.tracking.deployed_model, run_id, {
            "method": "train", "data_version": ctx.data_version, "reference_attack_run": attack_run_id,
            "train_size": len(bundle.train), "roles_fingerprint": bundle.roles_fingerprint},
            f"train: the GR recipe on all {len(bundle.train)} records of data version {ctx.data_version} "
            f"(run {run_id}); `iau train`")
        registry.promote(version)
        log.info("%s is the champion (validation accuracy %.2f)", version.uri, report.best_val_acc)
        store_summed_gradient(run_id, model, bundle.train, bundle.val, ctx)
    return version
