"""Amnesiac unlearning, the relabelling variant (Graves et al. 2021): D_f gets random *wrong* labels once,
then training goes on over D_r plus relabelled D_f, so the model unlearns D_f's true labels while D_r holds
the rest in place. Settings: iau_core.config.unlearning.AmnesiacSettings."""

from __future__ import annotations

from iau_core.data import Split
from iau_core.training import make_optimizer
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import (
    cross_entropy,
    descend,
    joined,
    num_classes,
    random_labels,
    run_epochs,
    seeded,
    settings_choices,
    shuffled,
)


def amnesiac(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.amnesiac
    model = task.copy_model()
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)
    forget = task.forget
    wrong = random_labels(forget.y, num_classes(model, forget), generator, wrong_only=True)
    data = joined(task.retain, Split(forget.x, wrong, forget.ids))

    def epoch(_: int) -> None:
        for batch in shuffled(data, task.training.batch_size, generator):
            descend(optimizer, cross_entropy(model, batch))

    return Unlearned(model, settings_choices(settings) | run_epochs(model, task, settings.epochs, epoch))
