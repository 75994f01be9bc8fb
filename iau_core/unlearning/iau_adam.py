"""The public IAU code's step (iau_core.config.unlearning.IauAdamSettings): the gradient of mean CE(D_r) -
mean CE(D_f) at the deployed parameters, applied by one torch.optim.Adam step. Adam's bias-corrected first step
moves each weight by lr * g / (|g| + eps), about lr * sign(g), so this is a sign-gradient step of fixed size:
Eq. 8 (`iau`) instead moves each weight in proportion to its gradient, by an eta the eta rule chooses per request.
No rule chooses lr here: the public code fixes it at 1e-3 whatever the request.
"""

from __future__ import annotations

import torch

from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.gradients import iau_direction


def iau_adam(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.iau_adam
    model = task.copy_model().eval()  # the gradients at theta* as deployed (no dropout noise)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    for k in range(settings.steps):
        # D's cached summed gradient holds only at the deployed parameters: the first step alone may use it
        cached = task.summed_gradient if k == 0 else None
        direction = iau_direction(model, task.retain, task.forget, task.unlearning.batch_size, "mean", cached)
        for p, d in zip(params, direction, strict=True):
            p.grad = d
        optimizer.step()
        if task.observe:
            task.observe(k + 1, model)
    model.eval()
    return Unlearned(model, {"lr": settings.lr, "steps": settings.steps, "reduction": "mean",
                             "summed_gradient": "cached" if task.summed_gradient else "computed"})
