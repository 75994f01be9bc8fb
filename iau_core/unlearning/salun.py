"""SalUn (Fan et al. 2024): weight saliency, then random-label unlearning on the salient weights only.

The mask keeps the weights whose |gradient of D_f's summed loss| lies above the `threshold` quantile over
all weights (one global ranking); the rest stay frozen. Training then runs over D_r plus D_f with uniform
random labels (drawn once), the gradient multiplied by the mask before each step. Settings:
iau_core.config.unlearning.SalunSettings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.data import Split
from iau_core.training import batches, make_optimizer
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import (
    cross_entropy,
    joined,
    num_classes,
    random_labels,
    run_epochs,
    seeded,
    settings_choices,
    shuffled,
)


def saliency_mask(model: nn.Module, forget: Split, threshold: float, batch_size: int) -> list[torch.Tensor]:
    """1.0 for the weights with the largest |dL(D_f)/dw| (the top 1 - threshold share, ranked over the whole
    network), 0.0 elsewhere; one mask per parameter tensor."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for idx in batches(len(forget), batch_size):
        idx = idx.to(forget.x.device)
        loss = F.cross_entropy(model(forget.x[idx]), forget.y[idx], reduction="sum")
        for acc, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc.add_(g.abs())
    cut = torch.quantile(torch.cat([g.flatten() for g in total]), threshold)
    return [(g > cut).float() for g in total]


def salun(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.salun
    model = task.copy_model()
    mask = saliency_mask(model, task.forget, settings.threshold, task.unlearning.batch_size)
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)
    forget = task.forget
    relabelled = Split(forget.x, random_labels(forget.y, num_classes(model, forget), generator, wrong_only=False),
                       forget.ids)
    data = joined(task.retain, relabelled)

    def epoch(_: int) -> None:
        for batch in shuffled(data, task.training.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            cross_entropy(model, batch).backward()
            for p, m in zip(model.parameters(), mask, strict=True):
                p.grad.mul_(m)
            optimizer.step()

    salient = sum(m.sum().item() for m in mask) / sum(m.numel() for m in mask)
    return Unlearned(model, settings_choices(settings) | {"salient_share": salient}
                     | run_epochs(model, task, settings.epochs, epoch))
