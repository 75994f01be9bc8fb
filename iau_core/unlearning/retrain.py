"""The gold model: retraining from scratch on D_r with the original's recipe and seed, what the model would be had D_f
never been seen. Its unlearn_seconds is that whole training."""

from __future__ import annotations

from iau_core.sharding import train_fresh
from iau_core.unlearning.base import Unlearned, UnlearningTask


def retrain(task: UnlearningTask) -> Unlearned:
    return train_on_retained(task, task.seed)


def train_on_retained(task: UnlearningTask, seed: int) -> Unlearned:
    # train_fresh: train_model itself for one network; a sharded model (training.shards) trains shard by shard
    model, report = train_fresh(task.build_model(seed).to(task.device), task.retain, task.val, task.training,
                                task.device, seed, task.progress)
    return Unlearned(model, {"seed": seed, "epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                             **{f"training.{k}": v for k, v in task.training.model_dump().items()}})
