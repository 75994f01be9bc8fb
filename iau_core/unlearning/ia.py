"""IA, the paper's Fig. 2 ablation without gradient correction: Eq. 5 alone, one plain gradient step that
ascends D_f's loss at the deployed parameters,

    theta <- theta + eta * sum_{D_f} grad loss     (reduction: sum; mean: the mean over D_f)

with eta chosen by the same rule as IAU's (unlearning.eta, unlearning.eta_rule), so the two differ only by
the retained-set term."""

from __future__ import annotations

from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.gradients import ForgetLine, summed_loss_and_gradient, take_step


def ia(task: UnlearningTask) -> Unlearned:
    model = task.copy_model().eval()
    settings = task.unlearning
    loss, grads = summed_loss_and_gradient(model, task.forget, settings.batch_size)
    scale = len(task.forget) if settings.reduction == "mean" else 1
    direction = [-g / scale for g in grads]
    line = ForgetLine.along(direction, loss, grads, len(task.forget))
    return Unlearned(model, take_step(model, direction, task.forget, task.val, settings, task.device, line=line))
