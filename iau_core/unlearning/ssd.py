"""Selective Synaptic Dampening (Foster et al. 2024, AAAI): no training, one multiplication per parameter.

Importance is the diagonal empirical Fisher as the authors compute it: the squared gradient of the batch-mean
cross-entropy, averaged over the batches of a fixed-order pass (model in eval mode). I_Df over D_f, I_D over D
(the training set: D_r then D_f, as their loader concatenates them). A parameter is selected where
I_Df > alpha * I_D, i.e. D_f leans on it far more than the data as a whole, and multiplied there by
beta = min(lambda * I_D / I_Df, 1), so the more specialised to D_f, the more it is dampened; every other
parameter (and every buffer) is left exactly as deployed. Settings: iau_core.config.unlearning.SsdSettings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config.unlearning import SsdSettings
from iau_core.data import Split
from iau_core.training import batches
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import joined, settings_choices


def importance(model: nn.Module, split: Split, batch_size: int) -> dict[str, torch.Tensor]:
    """Mean over the batches (in order) of grad(batch-mean CE)^2, per parameter."""
    model.eval()
    params = dict(model.named_parameters())
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    count = 0
    for idx in batches(len(split), batch_size):
        idx = idx.to(split.x.device)
        loss = F.cross_entropy(model(split.x[idx]), split.y[idx])
        for (k, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values())), strict=True):
            total[k] += g * g
        count += 1
    return {k: v / count for k, v in total.items()}


def dampen(model: nn.Module, forget_importance: dict[str, torch.Tensor], data_importance: dict[str, torch.Tensor],
           alpha: float, dampening: float) -> float:
    """Multiply the selected parameters by beta in place; returns the share of parameters selected."""
    selected = total = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            i_f, i_d = forget_importance[name], data_importance[name]
            where = i_f > alpha * i_d  # I_Df > 0 there, so beta is finite
            beta = torch.where(where, (dampening * i_d / i_f.clamp_min(torch.finfo(i_f.dtype).tiny)).clamp(max=1.0),
                               torch.ones_like(p))
            p.mul_(beta)
            selected += int(where.sum().item())
            total += p.numel()
    return selected / total


def ssd(task: UnlearningTask) -> Unlearned:
    settings: SsdSettings = task.unlearning.ssd
    model = task.copy_model()
    forget_importance = importance(model, task.forget, settings.batch_size)
    data_importance = importance(model, joined(task.retain, task.forget), settings.batch_size)
    share = dampen(model, forget_importance, data_importance, settings.alpha, settings.dampening)
    model.eval()
    return Unlearned(model, settings_choices(settings) | {"dampened_share": share})
