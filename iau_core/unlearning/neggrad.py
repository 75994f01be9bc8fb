"""NegGrad: gradient ascent on D_f's cross-entropy, nothing else (no term keeps D_r). Settings:
iau_core.config.unlearning.NegGradSettings."""

from __future__ import annotations

from iau_core.training import make_optimizer
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import (
    cross_entropy,
    descend,
    run_epochs,
    seeded,
    settings_choices,
    shuffled,
)


def neggrad(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.neggrad
    model = task.copy_model()
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)

    def epoch(_: int) -> None:
        for batch in shuffled(task.forget, task.training.batch_size, generator):
            descend(optimizer, -cross_entropy(model, batch))

    return Unlearned(model, settings_choices(settings) | run_epochs(model, task, settings.epochs, epoch))
