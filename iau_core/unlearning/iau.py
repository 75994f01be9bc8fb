"""Influence Approximation Unlearning, paper Eq. 8: one plain gradient step

    theta <- theta - eta * (grad mean_{D_r} loss - grad mean_{D_f} loss)

descending on the retained set (gradient correction, Eq. 6) while ascending on the forget set
(incremental approximation, Eq. 5). Mean rather than summed losses keep eta independent of |D_r| and |D_f|;
the paper's code also uses means (but then takes an Adam step, a sign-like update; this is Eq. 8 as written).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.data import Split
from iau_core.training import batches
from iau_core.unlearning.base import UnlearningTask


def mean_loss_gradient(model: nn.Module, split: Split, batch_size: int) -> list[torch.Tensor]:
    """grad_theta of the mean cross-entropy over `split`, accumulated batch by batch (memory ~ one batch)."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for idx in batches(len(split), batch_size):
        idx = idx.to(split.x.device)
        loss = F.cross_entropy(model(split.x[idx]), split.y[idx], reduction="sum")
        for acc, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc.add_(g)
    return [g / len(split) for g in total]


def iau(task: UnlearningTask) -> nn.Module:
    model = task.copy_model().eval()  # loss at theta* as deployed: no dropout noise, frozen norm statistics
    eta = task.unlearning.eta
    grad_retain = mean_loss_gradient(model, task.retain, task.unlearning.batch_size)
    grad_forget = mean_loss_gradient(model, task.forget, task.unlearning.batch_size)
    with torch.no_grad():
        params = [p for p in model.parameters() if p.requires_grad]
        for p, g_r, g_f in zip(params, grad_retain, grad_forget, strict=True):
            p.sub_(eta * (g_r - g_f))
    return model
