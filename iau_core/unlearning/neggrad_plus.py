"""NegGrad+ (Kurmanji et al. 2023): each step descends beta * CE(D_r batch) - (1 - beta) * CE(D_f batch), so
the ascent on D_f is held back by learning D_r. An epoch is one pass over D_r, D_f's batches cycling beside
it. Settings: iau_core.config.unlearning.NegGradPlusSettings."""

from __future__ import annotations

from iau_core.training import make_optimizer
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import (
    cross_entropy,
    cycled,
    descend,
    run_epochs,
    seeded,
    settings_choices,
    shuffled,
)


def neggrad_plus(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.neggrad_plus
    model = task.copy_model()
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)
    forget_batches = cycled(task.forget, task.training.batch_size, seeded(task, salt=1))
    beta = settings.beta

    def epoch(_: int) -> None:
        for batch in shuffled(task.retain, task.training.batch_size, generator):
            loss = beta * cross_entropy(model, batch) - (1 - beta) * cross_entropy(model, next(forget_batches))
            descend(optimizer, loss)

    return Unlearned(model, settings_choices(settings) | run_epochs(model, task, settings.epochs, epoch))
