"""Influence Approximation Unlearning, paper Eq. 8: one plain gradient step at the deployed parameters

    theta <- theta - eta * (sum_{D_r} grad loss - sum_{D_f} grad loss)        (reduction: sum, Eq. 8)
    theta <- theta - eta * (mean_{D_r} grad loss - mean_{D_f} grad loss)      (reduction: mean, public code)

descending on the retained set (gradient correction, Eq. 6) while ascending on the forget set (incremental
approximation, Eq. 5). The two reductions differ in direction, not only in scale: with means the forget term
weighs |D_r| / |D_f| times more. With `eta: auto` the step size is chosen per run by the eta rule
(gradients.choose_eta). With D's summed gradient at hand (task.summed_gradient, a nightly batch) the step reads
D_f only.
"""

from __future__ import annotations

from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.gradients import iau_direction_and_line, take_step


def iau(task: UnlearningTask) -> Unlearned:
    model = task.copy_model().eval()  # loss at theta* as deployed: no dropout noise, frozen norm statistics
    settings = task.unlearning
    direction, line = iau_direction_and_line(model, task.retain, task.forget, settings.batch_size,
                                             settings.reduction, task.summed_gradient)
    cached = task.summed_gradient
    choices = take_step(model, direction, task.forget, task.val, settings, task.device,
                        cached.val_logits_for(task.val) if cached else None, line)
    return Unlearned(model, {**choices, "summed_gradient": "cached" if task.summed_gradient else "computed"})
