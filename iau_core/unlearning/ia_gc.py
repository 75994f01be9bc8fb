"""IA+GC, the paper's Fig. 2 ablation without gradient restriction: IAU's step (Eq. 8, with its eta rule) on
a base model trained *without* GR. The step is iau's; what differs is the model it starts from, which this
method declares in iau_core.config.unlearning.BASE_RECIPES ('no_gr': the deployed recipe with gr_alpha = 0), and which
the flow trains once per seed and passes in as task.model."""

from __future__ import annotations

from iau_core.config import base_recipe
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.iau import iau


def ia_gc(task: UnlearningTask) -> Unlearned:
    done = iau(task)
    return Unlearned(done.model, {**done.choices, "base_recipe": base_recipe("ia_gc")})
