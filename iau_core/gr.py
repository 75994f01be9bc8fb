"""Gradient Restriction (paper Eq. 7): the GR loss in its two readings, and its gradient by the exact double
backward or by a finite difference with the ReLU and max-pool switches held (FrozenKinks). train_model
(iau_core/training.py) and the stacked loop (iau_core/ensemble_training.py) call it every step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

from iau_core.config import GrReading
from iau_core.config.training import GrHvp


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
