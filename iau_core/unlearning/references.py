"""The two reference points every comparison needs: retraining (the gold model) and doing nothing."""

from __future__ import annotations

from torch import nn

from iau_core.training import train_model
from iau_core.unlearning.base import UnlearningTask


def retrain(task: UnlearningTask) -> nn.Module:
    """Train from scratch on D_r with the original's recipe and seed: what the model would be had D_f
    never been seen. Its unlearn_seconds is that whole training."""
    model = task.build_model().to(task.device)
    train_model(model, task.retain, task.val, task.training, task.device, task.seed)
    return model


def original(task: UnlearningTask) -> nn.Module:
    """Do nothing: the deployed model, scored like a method so every table shows what unlearning buys."""
    return task.copy_model()
