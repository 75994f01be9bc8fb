"""The training recipe USGD declares (Thudi et al. 2022, 'Unrolling SGD'), and its single-gradient unlearning.

Unrolling T steps of SGD from the initial weights w_0 to first order,

    w_T ~ w_0 - sum_t lr_t / |B_t| * sum_{i in B_t} grad loss_i(w_0),

so a record's whole contribution is -c_i * grad loss_i(w_0), with c_i the sum of lr_t / |B_t| over the steps that
sampled it (lr times the number of times it was sampled, over the batch size). Single-gradient unlearning adds
it back: w_T + sum_{i in D_f} c_i * grad loss_i(w_0). That needs what the project's own recipe (Adam, GR,
early stopping that restores an earlier epoch) does not keep: plain SGD (no momentum, so each step's gradient
enters once), the initial weights, and how often each record was sampled. `train_unrolled` trains that way
and keeps all three.

The loss is the paper's: cross-entropy plus `sd_weight` times the standard-deviation (SD) term, which for a
batch is sum_i std(logits_i) / (|B| * classes). It is a per-record term inside the batch mean, so the
unrolled contribution of each record is still its own gradient.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config.unlearning import UsgdSettings
from iau_core.data import Split
from iau_core.training import batches


def sd_losses(logits: torch.Tensor, y: torch.Tensor, sd_weight: float) -> torch.Tensor:
    """(B,) each record's loss: CE + sd_weight * std of its logits over the classes / classes. The batch's
    SD loss is their mean."""
    ce = F.cross_entropy(logits, y, reduction="none")
    if sd_weight == 0:
        return ce
    return ce + sd_weight * logits.std(1) / logits.shape[1]


@dataclass(frozen=True)
class UnrolledRun:
    """A model trained by the USGD recipe, with what its unlearning needs."""

    model: nn.Module  # w_T
    # the recorded weights: w_0 first, then (with checkpoint_every k > 0) the weights at the start of every k-th
    # epoch; a step's records are unrolled around the last one recorded before it
    checkpoints: list[dict[str, torch.Tensor]]
    ids: torch.Tensor  # (N,) sample ids of the training records, in the order of the split trained on
    times_sampled: torch.Tensor  # (N,) how often each record was in a batch
    step_weight: torch.Tensor  # (checkpoints, N) c_i per checkpoint: sum over its batches of lr / |batch|
    seconds: float


def train_unrolled(model: nn.Module, train: Split, settings: UsgdSettings, seed: int,
                   exclude_ids: np.ndarray | None = None) -> UnrolledRun:
    """Train `model` in place from its current weights (w_0, kept) with plain SGD on the SD loss, a seeded
    shuffle per epoch, every epoch of `settings.epochs` (no early stopping: every step counts).

    With `exclude_ids` the same shuffles are drawn and those records are dropped from each batch: the naive
    retraining on the same batch sequence that the paper's verification error compares with."""
    start = time.perf_counter()
    device = train.x.device
    checkpoints: list[dict[str, torch.Tensor]] = []
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.0,
                                weight_decay=settings.weight_decay)
    excluded = torch.from_numpy(np.isin(train.ids.cpu().numpy(), exclude_ids if exclude_ids is not None else []))
    times = torch.zeros(len(train), dtype=torch.long)
    every = settings.checkpoint_every
    segments = 1 if every == 0 else -(-settings.epochs // every)
    weight = torch.zeros(segments, len(train), dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(settings.epochs):
        if epoch == 0 or (every and epoch % every == 0):
            checkpoints.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        for idx in batches(len(train), settings.batch_size, generator):
            idx = idx[~excluded[idx]]
            if len(idx) == 0:
                continue
            on_device = idx.to(device)
            loss = sd_losses(model(train.x[on_device]), train.y[on_device], settings.sd_weight).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[idx] += 1
            weight[len(checkpoints) - 1, idx] += settings.lr / len(idx)
    model.eval()
    return UnrolledRun(model, checkpoints, train.ids.cpu(), times, weight, time.perf_counter() - start)


def single_gradient_unlearn(run: UnrolledRun, forget: Split, settings: UsgdSettings) -> nn.Module:
    """w_T + sum_{i in D_f} c_i * grad loss_i(w_0): a new model, `run.model` unchanged; with checkpoints, the sum
    over them of each one's c_i * grad loss_i(checkpoint). D_f's gradients are taken at the recorded weights,
    in train mode as during training (batch norm then normalizes by each batch of D_f's own statistics: exact
    per record for models without batch norm, as LeNet5 and the MLP)."""
    position = {int(i): k for k, i in enumerate(run.ids.tolist())}
    missing = [int(i) for i in forget.ids.cpu().tolist() if int(i) not in position]
    if missing:
        raise ValueError(f"{len(missing)} forget records were not in the USGD training set, e.g. {missing[:5]}")
    columns = [position[int(i)] for i in forget.ids.cpu().tolist()]
    at = copy.deepcopy(run.model).train()
    params = list(at.parameters())
    total = [torch.zeros_like(p) for p in params]
    for state, weights in zip(run.checkpoints, run.step_weight, strict=True):
        at.load_state_dict(state)
        coefficient = weights[columns]
        for idx in batches(len(forget), settings.batch_size):
            on_device = idx.to(forget.x.device)
            c = coefficient[idx].to(forget.x.device, forget.x.dtype)
            losses = sd_losses(at(forget.x[on_device]), forget.y[on_device], settings.sd_weight)
            for acc, g in zip(total, torch.autograd.grad((c * losses).sum(), params), strict=True):
                acc.add_(g)
    unlearned = copy.deepcopy(run.model)
    with torch.no_grad():
        for p, g in zip(unlearned.parameters(), total, strict=True):
            p.add_(g)
    return unlearned.eval()
