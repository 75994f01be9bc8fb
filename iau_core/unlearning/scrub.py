"""SCRUB (Kurmanji et al. 2023): a student, a copy of the deployed model, is pushed away from the teacher
(the deployed model, frozen) on D_f and kept close to it on D_r.

Each epoch begins, for the first `max_epochs`, with a max-step pass over D_f (descend -KL(teacher || student))
and then makes a min-step pass over D_r (descend gamma * CE + alpha * KL). KL is taken at temperature T and
scaled by T^2, as in the distillation code SCRUB builds on. Settings: iau_core.config.unlearning.ScrubSettings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.data import Split
from iau_core.training import make_optimizer
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import descend, run_epochs, seeded, settings_choices, shuffled


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the tempered softmaxes, mean over the batch, times T^2."""
    log_student = F.log_softmax(student_logits / temperature, 1)
    teacher = F.softmax(teacher_logits / temperature, 1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature ** 2


def scrub(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.scrub
    teacher = task.model.eval()
    student = task.copy_model()
    optimizer = make_optimizer(settings.optimizer, student.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)
    batch_size, t = task.training.batch_size, settings.temperature

    def kl(model: nn.Module, batch: Split) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(batch.x)
        return distill_kl(model(batch.x), target, t)

    def epoch(number: int) -> None:
        if number <= settings.max_epochs:
            for batch in shuffled(task.forget, batch_size, generator):
                descend(optimizer, -kl(student, batch))
        for batch in shuffled(task.retain, batch_size, generator):
            loss = settings.gamma * F.cross_entropy(student(batch.x), batch.y) + settings.alpha * kl(student, batch)
            descend(optimizer, loss)

    return Unlearned(student, settings_choices(settings) | run_epochs(student, task, settings.epochs, epoch))
