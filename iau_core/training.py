"""One training recipe (GR loss, the configured optimizer and learning-rate schedule, optional augmentation,
early stopping on validation accuracy) for the original model, the retrained gold model and the shadow models.

Augmentation lives in train_model only: unlearning's gradients, the attacks' scores and every evaluation read
the records as they are. The GR math is in iau_core/gr.py and the evaluation helpers in iau_core/evaluation.py;
the names callers import from here are re-exported (`__all__`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import Augment, CosineLr, SgdParams, StepLr, TrainingParams
from iau_core.data import Split
from iau_core.evaluation import (
    accuracy,
    batches,
    logits_accuracy,
    per_sample_grad_norms,
    per_sample_losses,
    predict_logits,
)
from iau_core.gr import FD_RELATIVE_STEP, FrozenKinks, floored_sqrt, gr_backward, gr_loss, resolve_hvp

__all__ = [  # this module's own names, and those callers have always imported from here
    "FD_RELATIVE_STEP", "MOMENTUM", "FrozenKinks", "Progress", "TrainReport", "accuracy", "augment_batch",
    "batches", "floored_sqrt", "gr_backward", "gr_loss", "logits_accuracy", "lr_factor", "make_optimizer",
    "per_sample_grad_norms", "per_sample_losses", "predict_logits", "recipe_optimizer", "recipe_optimizer_over",
    "resolve_device", "resolve_hvp", "synchronize", "train_model",
]


def resolve_device(choice: str) -> torch.device:
    """'auto' picks cuda when present; asking for cuda on a machine without one is an error, not a fallback."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for in params.yaml but torch sees no CUDA device")
    return torch.device(choice)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so a wall-clock reading covers the work, not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class TrainReport:
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    seconds: float
    stopped_early: bool  # patience ran out before max_epochs (paper Table VI counts these epochs)


Progress = Callable[[str], None]


MOMENTUM = 0.9  # SGD's default momentum here, and the one every baseline's public code uses


def make_optimizer(kind: str, parameters: Iterable[nn.Parameter], lr: float, weight_decay: float,
                   momentum: float = MOMENTUM, nesterov: bool = False) -> torch.optim.Optimizer:
    """The one optimizer factory: the training recipe's and every baseline's (adam | sgd)."""
    if kind == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    raise ValueError(f"unknown optimizer {kind!r}; known: adam, sgd")


def recipe_optimizer(model: nn.Module, params: TrainingParams) -> torch.optim.Optimizer:
    """The training recipe's optimizer, from its section (training.optimizer, training.lr)."""
    return recipe_optimizer_over(model.parameters(), params)


def recipe_optimizer_over(parameters: Iterable[torch.Tensor], params: TrainingParams) -> torch.optim.Optimizer:
    """The recipe's optimizer over any parameter tensors (models trained together stack theirs)."""
    opt = params.optimizer
    sgd = {"momentum": opt.momentum, "nesterov": opt.nesterov} if isinstance(opt, SgdParams) else {}
    return make_optimizer(opt.kind, parameters, params.lr, opt.weight_decay, **sgd)


def lr_factor(params: TrainingParams, epoch: int) -> float:
    """The learning rate of 0-based `epoch` as a multiple of params.lr."""
    schedule = params.lr_schedule
    if isinstance(schedule, CosineLr):
        return 0.5 * (1.0 + math.cos(math.pi * epoch / params.max_epochs))
    if isinstance(schedule, StepLr):
        return schedule.gamma ** (epoch // schedule.every)
    return 1.0


def augment_batch(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): each image zero-padded by crop_padding, cropped back at a random offset,
    and flipped left-right with probability 1/2. Draws from its own generator, so switching augmentation on
    does not change the order of the batches."""
    b, _, h, w = x.shape
    pad = augment.crop_padding
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if augment.flip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def train_model(model: nn.Module, train: Split, val: Split, params: TrainingParams,
                device: torch.device, seed: int, progress: Progress | None = None) -> TrainReport:
    """Train in place with the GR loss; stop after `patience` epochs without a validation gain and keep the
    best weights. Shuffling (and augmentation) is seeded, so the same model init, data and seed give the same
    model on CPU. `progress` receives one line per epoch (the flow sends it to the Prefect log)."""
    start = time.perf_counter()
    model.to(device)
    train, val = train.to(device), val.to(device)
    optimizer = recipe_optimizer(model, params)
    generator = torch.Generator().manual_seed(seed)
    augment_generator = torch.Generator().manual_seed(seed + 1)
    best_acc, best_epoch, best_state, epoch = -1.0, 0, None, 0
    hvp = resolve_hvp(model, params.gr_reading, params.gr_hvp)  # once, not per batch
    for epoch in range(1, params.max_epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = params.lr * lr_factor(params, epoch - 1)
        model.train()
        for idx in batches(len(train), params.batch_size, generator):
            idx = idx.to(device)
            x = train.x[idx]
            if params.augment is not None:
                x = augment_batch(x, params.augment, augment_generator)
            optimizer.zero_grad(set_to_none=True)
            gr_backward(model, x, train.y[idx], params.gr_alpha, params.gr_reading, hvp)
            optimizer.step()
        acc = accuracy(model, val, device)
        if acc > best_acc:
            best_acc, best_epoch, best_state = acc, epoch, copy.deepcopy(model.state_dict())
        if progress:
            progress(f"epoch {epoch}/{params.max_epochs}: val acc {acc:.2f}% (best {best_acc:.2f}% at epoch "
                     f"{best_epoch}), {time.perf_counter() - start:.0f}s")
        if epoch - best_epoch >= params.patience:
            break
    if params.keep == "best":  # "last": the final epoch's weights, however much they have overfitted
        model.load_state_dict(best_state)
    synchronize(device)
    stopped_early = epoch < params.max_epochs
    return TrainReport(epoch, best_epoch, best_acc, time.perf_counter() - start, stopped_early)
