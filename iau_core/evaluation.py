"""Batched evaluation: logits, accuracy, per-record losses and gradient norms, memory following the batch size.
The one evaluation path every caller uses (training's early stopping, the attacks, the verdicts, the studies).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from iau_core.data import Split


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Index batches over n records; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


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
