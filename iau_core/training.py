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
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

from iau_core.config import Augment, CosineLr, GrReading, SgdParams, StepLr, TrainingParams
from iau_core.config.training import GrHvp
from iau_core.data import Split
from iau_core.runtime import rebalance_threads


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
    return loss + alpha * floored_sqrt(torch.stack([(g * g).sum() for g in grads]).sum())


def per_sample_grad_norms_differentiable(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) ||grad_theta CE(x_i, y_i)||_2, differentiable with respect to the model's parameters (torch.func
    composes with autograd), so GR's per-sample reading can be trained by an ordinary backward."""
    params = {k: v for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)  # each (B, *param.shape)
    return floored_sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))


# Finite-difference step along the unit direction, relative to the parameters' size. Measured on LeNet5 (GR term
# against the double backward): 1e-3 0.9%, 1e-4 0.09%, 1e-5 0.4% (float32 rounding takes over).
FD_RELATIVE_STEP = 1e-4


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def resolve_hvp(model: nn.Module, reading: GrReading, hvp: GrHvp) -> GrHvp:
    """training.gr_hvp's `auto`: the finite difference where it is right and cheaper, the double backward elsewhere.
    - Right: FrozenKinks holds every switch of a model without batch norm (lenet5, mlp). The ResNet's blocks call
      torch.relu, which it cannot hold, so a difference there could cross switches.
    - Cheaper: the batch reading (1.9-2.2x a plain epoch against 2.4-2.7x, 2 threads). In the per-sample reading the
      shifted pass is vmapped over one parameter set per record and costs more than it saves."""
    if hvp != "auto":
        return hvp
    return "finite_difference" if reading == "batch" and not has_batch_norm(model) else "double_backward"


def gr_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float, reading: GrReading = "batch",
                hvp: GrHvp = "double_backward") -> torch.Tensor:
    """Accumulate the GR loss's gradient into the parameters' .grad and return the loss (detached).

    d/dtheta ||g|| = H g / ||g|| = H u, u the unit gradient: a Hessian-vector product. `double_backward` gets it
    exactly through the graph of the gradient; `finite_difference` as (grad CE(theta + r u) - grad CE(theta)) / r,
    one more plain gradient pass with the first pass's ReLU switches held (FrozenKinks). Measured per epoch of
    the batch reading at 2 threads: 1.9x and 2.4x a plain one (docs/science.md, "GR loss")."""
    hvp = resolve_hvp(model, reading, hvp)
    if alpha == 0 or hvp == "double_backward":
        loss = gr_loss(model, x, y, alpha, reading)
        loss.backward()
        return loss.detach()
    if hvp != "finite_difference":
        raise ValueError(f"unknown training.gr_hvp {hvp!r}; known: auto, double_backward, finite_difference")
    if has_batch_norm(model):
        # the ResNet's blocks call torch.relu, which FrozenKinks cannot hold: the difference would cross switches
        raise ValueError("training.gr_hvp: finite_difference is for models without batch norm (lenet5, mlp); "
                         "set training.gr_hvp: double_backward or auto for this model")
    if reading == "per_sample":
        return _gr_per_sample_finite_difference(model, x, y, alpha)
    return _gr_batch_finite_difference(model, x, y, alpha)


def _fd_radius(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """r for a unit direction, as a tensor (no device sync)."""
    norms = torch._foreach_norm([p.detach() for p in params])
    return FD_RELATIVE_STEP * (1.0 + torch.stack(norms).square().sum().sqrt())


class FrozenKinks:
    """Records, in one pass, which units of each nn.ReLU were on and where each nn.MaxPool2d took its maximum,
    and replays those choices in the next pass. Why: a ReLU network's gradient jumps where a unit switches; a
    finite difference across such a jump is wrong by jump / r, however small r is (measured on LeNet5: errors of
    100% and more). With the switches held fixed the difference sees the same linear piece the double backward
    differentiates. Only nn.ReLU and nn.MaxPool2d modules are held; torch.relu called inside a forward is not (its
    model's difference may still cross switches).

    The held modules' forward is replaced while this object lives (close() restores it), rather than hooked:
    a hook runs after the module's own forward, so recording would pool twice (once more for the indices) and
    replaying would pool once for nothing. Pooling is the most expensive op of a LeNet5 step after the convs."""

    def __init__(self, model: nn.Module) -> None:
        self.patterns: dict[nn.Module, torch.Tensor] = {}
        self.mode: Literal["record", "replay", "off"] = "record"
        self.modules = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.MaxPool2d)]
        for module in self.modules:
            module.forward = self._forward_of(module)  # an instance attribute shadows the class's forward

    def _forward_of(self, module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        plain = type(module).forward.__get__(module)
        if isinstance(module, nn.ReLU):
            def relu(x: torch.Tensor) -> torch.Tensor:
                if self.mode == "replay":
                    return x * self.patterns[module]
                if self.mode == "record":
                    self.patterns[module] = x.detach() > 0
                return plain(x)
            return relu

        def max_pool(x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
            if self.mode == "off":
                return plain(x)
            if self.mode == "replay":
                where = self.patterns[module]
                out = x.flatten(-2).gather(-1, where.flatten(-2)).view_as(where)
            else:
                out, where = F.max_pool2d(x, module.kernel_size, module.stride, module.padding, module.dilation,
                                          module.ceil_mode, return_indices=True)
                self.patterns[module] = where
            return (out, where) if module.return_indices else out
        return max_pool

    def per_record(self) -> list[torch.Tensor]:
        """The recorded patterns in module order, each (B, ...), to vmap over records or models."""
        return [self.patterns[m] for m in self.modules]

    def use(self, patterns: list[torch.Tensor], leading: int = 0) -> None:
        """Replay `patterns` (one record's or one model's, inside vmap), with `leading` unit dimensions added."""
        self.patterns = {m: t.reshape((1,) * leading + tuple(t.shape)) for m, t in
                         zip(self.modules, patterns, strict=True)}
        self.mode = "replay"

    def close(self) -> None:
        for module in self.modules:
            del module.forward  # the class's forward again


def _gr_batch_finite_difference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    rng = _rng_state(x.device)  # the second pass must see the same dropout masks as the first
    kinks = FrozenKinks(model)
    try:
        loss = F.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params)
        norm = floored_sqrt(torch.stack(torch._foreach_norm(g)).square().sum())
        kept_buffers = [b.detach().clone() for b in model.buffers()]  # batch norm counts the batch once
        with torch.no_grad():
            saved = [p.clone() for p in params]
            r = _fd_radius(params)
            # the foreach ops: one call per step, not one per tensor (a LeNet5 step is a few milliseconds)
            torch._foreach_add_(params, torch._foreach_mul(g, r / norm))
        _set_rng_state(x.device, rng)
        kinks.mode = "replay"
        shifted = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    finally:
        kinks.close()
    with torch.no_grad():
        torch._foreach_copy_(params, saved)
        for b, k in zip(model.buffers(), kept_buffers, strict=True):
            b.copy_(k)
        gr_gradient = torch._foreach_sub(shifted, g)
        torch._foreach_mul_(gr_gradient, alpha / r)
        torch._foreach_add_(gr_gradient, g)  # g + alpha * (grad(theta + r u) - g) / r
    _accumulate(params, gr_gradient)
    return (loss + alpha * norm).detach()


def _gr_per_sample_finite_difference(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                                     alpha: float) -> torch.Tensor:
    """The per-sample reading: each record's own direction u_i, so the shifted pass is vmapped over parameters
    theta + r u_i too, each record replaying its own switches (one extra plain forward records them)."""
    names = [k for k, v in model.named_parameters() if v.requires_grad]
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())
    kinks = FrozenKinks(model)

    def loss_one(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    def shifted_grad(p: dict, xi: torch.Tensor, yi: torch.Tensor, patterns: list[torch.Tensor]) -> dict:
        kinks.use(patterns, leading=1)
        return grad(loss_one)(p, xi, yi)

    try:
        with torch.no_grad():
            model(x)  # records each record's switches
        patterns = kinks.per_record()
        kinks.mode = "off"
        g, losses = vmap(grad_and_value(loss_one), in_dims=(None, 0, 0))(params, x, y)
        norms = floored_sqrt(sum(t.flatten(1).pow(2).sum(1) for t in g.values()))  # (B,)
        r = _fd_radius(params.values())
        shifted_params = {k: params[k] + (r / norms).view(-1, *[1] * params[k].dim()) * g[k] for k in names}
        shifted = vmap(shifted_grad, in_dims=(0, 0, 0, 0))(shifted_params, x, y, patterns)
    finally:
        kinks.close()
    _accumulate([dict(model.named_parameters())[k] for k in names],
                [(g[k] + alpha * (shifted[k] - g[k]) / r).mean(0) for k in names])
    return (losses.mean() + alpha * norms.mean()).detach()


def _accumulate(params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g.detach() if p.grad is None else p.grad + g.detach()  # each g is a fresh tensor of its own


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def floored_sqrt(squared: torch.Tensor) -> torch.Tensor:
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
            rebalance_threads()  # peers may have started or ended (reads the registry at most once a second)
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
