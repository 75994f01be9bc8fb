"""l1-sparse unlearning (Jia et al. 2023): fine-tune on D_r with an l1 penalty on all weights whose weight
decays linearly to 0 over the epochs; sparsity shrinks what D_f left in the weights while D_r is relearned.
Settings: iau_core.config.unlearning.L1SparseSettings."""

from __future__ import annotations

import torch

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


def l1_sparse(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.l1_sparse
    model = task.copy_model()
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)

    def epoch(number: int) -> None:
        gamma = settings.gamma * (1 - (number - 1) / settings.epochs)  # linear decay, gamma at the first epoch
        for batch in shuffled(task.retain, task.training.batch_size, generator):
            l1 = torch.cat([p.flatten() for p in model.parameters()]).abs().sum()
            descend(optimizer, cross_entropy(model, batch) + gamma * l1)

    return Unlearned(model, settings_choices(settings) | run_epochs(model, task, settings.epochs, epoch))
