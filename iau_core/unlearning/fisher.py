"""Fisher forgetting (Golatkar et al. 2020): noise that hides what the weights no longer need to know.

F is the diagonal Fisher information of D_r under the model's own predictive distribution,
F = mean over D_r of sum_c p(c|x) * (d log p(c|x) / d theta)^2 (every class, not only the true label). Each
weight gets Gaussian noise of variance alpha / F, clamped: weights D_r barely constrains (small F) can carry
D_f's information, and they are the ones noised most. As in the authors' code for a random forget set, the
mean stays at the deployed weights (no Newton step), the variance of a weight matrix is averaged over its
inputs (one variance per output unit), and the output layer is clamped lower. Settings:
iau_core.config.unlearning.FisherSettings. Cost: one per-sample backward per record and class over D_r."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from iau_core.data import Split
from iau_core.training import batches
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import num_classes, seeded, settings_choices

FISHER_FLOOR = 1e-8  # the authors' guard against dividing by a zero Fisher


def fisher_diagonal(model: nn.Module, split: Split, batch_size: int) -> dict[str, torch.Tensor]:
    """Mean over `split` of sum_c p(c|x) * grad(log p(c|x))^2, per parameter (vmap over records, loop over
    classes)."""
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def nll_one(p: dict, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (x.unsqueeze(0),)), c.unsqueeze(0))

    per_sample = vmap(grad(nll_one), in_dims=(None, 0, 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    classes = num_classes(model, split)
    for idx in batches(len(split), batch_size):
        x = split.x[idx.to(split.x.device)]
        with torch.no_grad():
            prob = F.softmax(model(x), 1)  # (B, C)
        for c in range(classes):
            grads = per_sample(params, x, torch.full((len(x),), c, device=x.device))
            weight = prob[:, c]
            for k, g in grads.items():
                total[k] += torch.einsum("b,b...->...", weight, g * g)
    return {k: v / len(split) for k, v in total.items()}


def fisher(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.fisher
    model = task.copy_model().eval()
    info = fisher_diagonal(model, task.retain, settings.batch_size)
    classes = num_classes(model, task.retain)
    generator = seeded(task)
    with torch.no_grad():
        for name, p in model.named_parameters():
            clamp = settings.max_variance_output if p.shape[0] == classes else settings.max_variance
            var = (1.0 / (info[name] + FISHER_FLOOR)).clamp(max=clamp)
            if p.ndim > 1:  # one variance per output unit, averaged over its inputs
                var = var.flatten(1).mean(1).view(-1, *([1] * (p.ndim - 1))).expand_as(p)
            noise = torch.randn(p.shape, generator=generator).to(p.device)
            p.add_((settings.alpha * var).sqrt() * noise)
    return Unlearned(model, settings_choices(settings))
