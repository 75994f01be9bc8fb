"""Models that are expensive and reusable: the deployed (base) model and the shadow-model attack.

Each is looked up in MLflow by a content key (data version + the params that shape it) and trained only
when no finished run has it, so a second `make run` with unchanged data and params reuses both.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from torch import nn

from iau_core.experiment import model_builder, train_attack, train_original
from iau_core.metrics import TEST_ACC
from iau_core.privacy import AttackMLP, ShadowAttack
from iau_core.training import accuracy
from tasks import tracking
from tasks.context import RunContext


@dataclass(frozen=True)
class ModelRef:
    run_id: str
    uri: str


@task(name="base-model", cache_policy=NO_CACHE)
def base_model(ctx: RunContext) -> ModelRef:
    """Train the original model with the GR loss (or reuse it) and register it as a model version."""
    key = tracking.cache_key("base", ctx.data_version, ctx.params, ("data", "model", "training"))
    found = tracking.find_finished_run(ctx.experiment_id, "base", key)
    if found:
        get_run_logger().info("reusing base model from run %s", found)
        return ModelRef(found, tracking.MlflowClient().get_run(found).data.tags["model_uri"])
    tags = {"kind": "base", "cache_key": key, "data_version": ctx.data_version,
            "git_commit": tracking.git_commit(ctx.repo_root)}
    with tracking.run(ctx.experiment_id, "base-model", tags) as run_id:
        bundle = ctx.bundle()
        model, report = train_original(ctx.params, bundle, ctx.device)
        tracking.log_params(run_id, tracking.flatten(ctx.params))
        tracking.log_metrics(run_id, {"epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                                      "best_val_acc": report.best_val_acc, "train_seconds": report.seconds,
                                      TEST_ACC: accuracy(model, bundle.test, ctx.device)})
        uri = tracking.log_model(run_id, model, bundle.test.x[:2], ctx.params.tracking.registered_model)
        tracking.set_tags(run_id, {"model_uri": uri})
    return ModelRef(run_id, uri)


@task(name="shadow-attack", cache_policy=NO_CACHE)
def shadow_attack(ctx: RunContext) -> str:
    """Train the shadow models and the attack on the shadow pool (or reuse them); returns the run id."""
    key = tracking.cache_key("shadow-attack", ctx.data_version, ctx.params, ("data", "model", "training", "mia"))
    found = tracking.find_finished_run(ctx.experiment_id, "shadow-attack", key)
    if found:
        get_run_logger().info("reusing shadow attack from run %s", found)
        return found
    tags = {"kind": "shadow-attack", "cache_key": key, "data_version": ctx.data_version,
            "git_commit": tracking.git_commit(ctx.repo_root)}
    with tracking.run(ctx.experiment_id, "shadow-attack", tags) as run_id:
        attack, report = train_attack(ctx.params, ctx.bundle(), ctx.device)
        tracking.log_params(run_id, tracking.flatten(ctx.params))
        metrics = {"attack_train_acc": report.attack_train_acc}
        for i, (train_acc, val_acc) in enumerate(zip(report.shadow_train_acc, report.shadow_val_acc, strict=True)):
            metrics |= {f"shadow{i}_train_acc": train_acc, f"shadow{i}_val_acc": val_acc}
        tracking.log_metrics(run_id, metrics)
        tracking.log_state_dict(run_id, attack.attack)
    return run_id


def load_base_model(ctx: RunContext, ref: ModelRef) -> nn.Module:
    model = model_builder(ctx.params, ctx.bundle())(ctx.params.seed)
    model.load_state_dict(tracking.load_state_dict(ref.run_id))
    return model


def load_attack(ctx: RunContext, run_id: str) -> ShadowAttack:
    num_classes = ctx.bundle().num_classes
    attack = AttackMLP(2 * num_classes, ctx.params.mia.hidden, ctx.params.mia.dropout)
    attack.load_state_dict(tracking.load_state_dict(run_id))
    return ShadowAttack(attack.eval(), num_classes)
