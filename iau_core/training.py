"""One training recipe (GR loss, the configured optimizer and learning-rate schedule, optional augmentation,
early stopping on validation accuracy) for the original model, the retrained gold model and the shadow models,
plus the batched evaluation helpers everything else uses.

Augmentation lives in train_model only: unlearning's gradients, the attacks' scores and every evaluation read
the records as they are.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from iau_core.config import Augment, CosineLr, GrReading, SgdParams, StepLr, TrainingParams
from iau_core.data import Split


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


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Index batches over n records; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def gr_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float,
            reading: GrReading = "batch") -> torch.Tensor:
    """Gradient Restriction loss, paper Eq. 7: CE + alpha * ||grad_theta CE||_2, in one of two readings.

    - `batch`: the norm of the gradient of the *batch-mean* loss, as the paper's public code does (one double
      backward per batch). Per-record gradients pointing different ways cancel inside the mean, so this
      restrains the batch's average pull more than any single record's.
    - `per_sample`: the batch mean of each record's own gradient norm, as Eq. 7 writes it (vmap over records).

    The norm is over the whole parameter vector, as Eq. 7 writes it (the public code sums per-tensor norms).
    alpha = 0 is plain cross-entropy.
    """
    loss = F.cross_entropy(model(x), y)
    if alpha == 0:
        return loss
    if reading == "per_sample":
        return loss + alpha * per_sample_grad_norms_differentiable(model, x, y).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return loss + alpha * _l2(torch.stack([(g * g).sum() for g in grads]).sum())


def per_sample_grad_norms_differentiable(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) ||grad_theta CE(x_i, y_i)||_2, differentiable with respect to the model's parameters (torch.func
    composes with autograd), so GR's per-sample reading can be trained by an ordinary backward."""
    params = {k: v for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)  # each (B, *param.shape)
    return _l2(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))


def _l2(squared: torch.Tensor) -> torch.Tensor:
    """sqrt with a floor, so a zero gradient (a perfectly fitted record) gives no NaN in the backward pass."""
    return squared.clamp_min(1e-12).sqrt()


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
    opt = params.optimizer
    sgd = {"momentum": opt.momentum, "nesterov": opt.nesterov} if isinstance(opt, SgdParams) else {}
    return make_optimizer(opt.kind, model.parameters(), params.lr, opt.weight_decay, **sgd)


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
    for epoch in range(1, params.max_epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = params.lr * lr_factor(params, epoch - 1)
        model.train()
        for idx in batches(len(train), params.batch_size, generator):
            idx = idx.to(device)
            x = train.x[idx]
            if params.augment is not None:
                x = augment_batch(x, params.augment, augment_generator)
            loss = gr_loss(model, x, train.y[idx], params.gr_alpha, params.gr_reading)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
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


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, num_classes) on the CPU, computed batch by batch so memory follows the batch size."""
    model.eval()
    outs = [model(split.x[idx].to(device)).float().cpu() for idx in batches(len(split), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(model: nn.Module, split: Split, device: torch.device) -> float:
    """Accuracy in percentage points (0-100), as docs/metrics.md reports it."""
    if len(split) == 0:
        return float("nan")
    return logits_accuracy(predict_logits(model, split, device), split.y.cpu())


def logits_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy (0-100) of logits already computed, for callers that also need the loss of the same pass."""
    return 100.0 * (logits.argmax(1) == y).float().mean().item()


def per_sample_losses(model: nn.Module, split: Split, device: torch.device) -> torch.Tensor:
    """Cross-entropy of each record (N,), on the CPU."""
    logits = predict_logits(model, split, device)
    return F.cross_entropy(logits, split.y.cpu(), reduction="none")


def per_sample_grad_norms(model: nn.Module, split: Split, device: torch.device,
                          batch_size: int = 256) -> torch.Tensor:
    """||grad_theta loss(z)||_2 for each record z (N,): what GR is meant to shrink (paper Fig. 3)."""
    model.eval().to(device)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    grad_fn = vmap(grad(loss_one), in_dims=(None, 0, 0))
    norms = []
    for idx in batches(len(split), batch_size):
        g = grad_fn(params, split.x[idx].to(device), split.y[idx].to(device))
        norms.append(torch.sqrt(sum(t.flatten(1).pow(2).sum(1) for t in g.values())).cpu())
    return torch.cat(norms)
