"""Bad teaching (Chundawat et al. 2023): the student, a copy of the deployed model, distils a competent
teacher (the deployed model) on part of D_r and an incompetent teacher (a random initialisation of the same
architecture) on D_f, so D_f's outputs become as uninformative as an untrained model's while D_r's stay.
Settings: iau_core.config.unlearning.BadTeacherSettings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from iau_core.data import Split
from iau_core.training import make_optimizer
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import descend, run_epochs, seeded, settings_choices, shuffled

INCOMPETENT_SEED_OFFSET = 20_000  # the bad teacher's initialisation: not the student's, not retrain_alt's


def bad_teacher(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.bad_teacher
    good = task.model.eval()
    bad = task.build_model(task.seed + INCOMPETENT_SEED_OFFSET).to(task.device).eval()
    student = task.copy_model()
    optimizer = make_optimizer(settings.optimizer, student.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)
    keep = torch.randperm(len(task.retain), generator=generator)[: round(settings.retain_fraction * len(task.retain))]
    retain = task.retain.take(keep.to(task.retain.x.device))
    # y marks the teacher: 0 = competent (D_r), 1 = incompetent (D_f); the labels themselves are never used
    data = Split(torch.cat([retain.x, task.forget.x]),
                 torch.cat([torch.zeros_like(retain.y), torch.ones_like(task.forget.y)]),
                 torch.cat([retain.ids, task.forget.ids]))
    t = settings.temperature

    def epoch(_: int) -> None:
        for batch in shuffled(data, settings.batch_size, generator):
            with torch.no_grad():
                use_bad = batch.y.bool().unsqueeze(1)
                target = torch.where(use_bad, F.softmax(bad(batch.x) / t, 1), F.softmax(good(batch.x) / t, 1))
            loss = F.kl_div(F.log_softmax(student(batch.x) / t, 1), target, reduction="batchmean")
            descend(optimizer, loss)

    return Unlearned(student, settings_choices(settings) | {"retain_records_used": len(retain)}
                     | run_epochs(student, task, settings.epochs, epoch))
