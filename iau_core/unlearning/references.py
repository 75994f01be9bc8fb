"""The reference points every comparison needs: retraining (the gold model), retraining with another seed (the
noise floor), and doing nothing."""

from __future__ import annotations

from iau_core.training import train_model
from iau_core.unlearning.base import Unlearned, UnlearningTask

ALT_SEED_OFFSET = 10_000  # retrain_alt's seed is the repeat's seed plus this: another init and shuffling


def retrain(task: UnlearningTask) -> Unlearned:
    """Train from scratch on D_r with the original's recipe and seed: what the model would be had D_f
    never been seen. Its unlearn_seconds is that whole training."""
    return _train_on_retained(task, task.seed)


def retrain_alt(task: UnlearningTask) -> Unlearned:
    """The same recipe on D_r with another seed: a second gold model. Its gaps to `retrain` are what two
    equally valid retrainings differ by, the floor every other gap is read against."""
    return _train_on_retained(task, task.seed + ALT_SEED_OFFSET)


def original(task: UnlearningTask) -> Unlearned:
    """Do nothing: the deployed model, scored like a method so every table shows what unlearning buys."""
    return Unlearned(task.copy_model(), {"seed": task.seed, "step": "none: the deployed model as it is"})


def _train_on_retained(task: UnlearningTask, seed: int) -> Unlearned:
    model = task.build_model(seed).to(task.device)
    report = train_model(model, task.retain, task.val, task.training, task.device, seed, task.progress)
    return Unlearned(model, {"seed": seed, "epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                             **{f"training.{k}": v for k, v in task.training.model_dump().items()}})
