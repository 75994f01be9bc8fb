"""IMU (Fan et al. 2025, arXiv 2508.01620): influence-weighted gradient ascent on D_f alone, on the classifier
layer only. Written from the paper's description; its public code has no licence and was not used.

1. Features. The model runs in eval mode (batch norm uses its running statistics, dropout is off) and the input
   h_i of its last linear layer is read once per D_f record. Only that layer (W, b) is ever updated, so the
   features stay fixed and the rest of the model, buffers included, is left exactly as deployed.
2. Influence. A record's cross-entropy gradient on the layer is g_i = (p_i - onehot(y_i)) [h_i, 1]^T. The
   diagonal Fisher over D_f, F = mean_i g_i^2, stands in for the Hessian (plus `damping` times its mean, so no
   coordinate divides by zero). I_i = mean_j g_j^T F^-1 g_i is, to first order, how much D_f's mean loss
   would rise if record i had not been trained on: how much i supports the fit that must be undone.
3. Weights. The most influential `keep_fraction` of D_f is kept; the kept records get w = |kept| *
   softmax(standardized I / temperature) (positive, ordered by influence, mean 1: the same total ascent as
   uniform GA), the others 0.
4. Ascent. Epochs of shuffled mini-batches over D_f descend -mean(w_i * CE_i) on the layer's parameters,
   under the shared stop rule (loop.run_epochs), which reads only D_f and the validation set.

The retained set is never read. Settings: iau_core.config.unlearning.ImuSettings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config.unlearning import ImuSettings
from iau_core.data import Split
from iau_core.training import batches, make_optimizer
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import descend, run_epochs, seeded, settings_choices

BATCH_NORM_MODE = "eval"  # the choice the paper leaves open, recorded with the run


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The model's last linear layer: the output layer of every model in iau_core.models."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear output layer for IMU to update")
    return linears[-1]


@torch.no_grad()
def classifier_inputs(model: nn.Module, split: Split, batch_size: int = 512) -> torch.Tensor:
    """(N, d): what the last linear layer receives for each record, the model in eval mode. Refuses a model
    whose output is not that layer's output (then updating it alone would not be IMU's update)."""
    model.eval()
    head = classifier_layer(model)
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, out: seen.append((args[0].detach(), out.detach())))
    try:
        feats = []
        for idx in batches(len(split), batch_size):
            seen.clear()
            out = model(split.x[idx.to(split.x.device)])
            h, head_out = seen[-1]
            if head_out.shape != out.shape or not torch.equal(head_out, out):
                raise ValueError(f"{type(model).__name__}'s last linear layer is not its output layer")
            feats.append(h.flatten(1))
    finally:
        hook.remove()
    return torch.cat(feats)


def per_record_gradients(head: nn.Linear, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, C, d + 1): the cross-entropy gradient of each record on [W | b], in closed form."""
    with torch.no_grad():
        residual = F.softmax(head(h), 1) - F.one_hot(y, head.out_features).to(h.dtype)
        extended = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype, device=h.device)], 1)
        return residual[:, :, None] * extended[:, None, :]


def influence_scores(head: nn.Linear, h: torch.Tensor, y: torch.Tensor, damping: float) -> torch.Tensor:
    """(N,) I_i = mean_j g_j^T (F + damping * mean F)^-1 g_i, F the diagonal Fisher over these records."""
    g = per_record_gradients(head, h, y)
    fisher = g.pow(2).mean(0)
    inverse = 1.0 / (fisher + damping * fisher.mean())
    return torch.einsum("ncd,cd->n", g, g.mean(0) * inverse)


def influence_weights(influence: torch.Tensor, keep_fraction: float, temperature: float) -> torch.Tensor:
    """(N,) ascent weights: |kept| * softmax(standardized influence / temperature) over the most influential
    `keep_fraction` (at least one record), 0 elsewhere. Mean 1 over the kept records."""
    n = len(influence)
    kept = torch.zeros(n, dtype=torch.bool, device=influence.device)
    kept[influence.argsort(descending=True)[:max(1, round(keep_fraction * n))]] = True
    scores = influence[kept]
    spread = scores.std() if len(scores) > 1 else scores.new_tensor(0.0)
    z = (scores - scores.mean()) / spread if spread > 0 else torch.zeros_like(scores)
    weights = torch.zeros_like(influence)
    weights[kept] = len(scores) * F.softmax(z / temperature, 0)
    return weights


def imu(task: UnlearningTask) -> Unlearned:
    settings: ImuSettings = task.unlearning.imu
    model = task.copy_model()
    head = classifier_layer(model)
    h = classifier_inputs(model, task.forget)
    y = task.forget.y
    influence = influence_scores(head, h, y, settings.damping)
    weights = influence_weights(influence, settings.keep_fraction, settings.temperature)
    optimizer = make_optimizer(settings.optimizer, head.parameters(), settings.lr, settings.weight_decay)
    generator = seeded(task)

    def epoch(_: int) -> None:
        # the features are fixed (nothing below the head changes), so the ascent runs on the head alone
        for idx in batches(len(h), task.training.batch_size, generator):
            idx = idx.to(h.device)
            ce = F.cross_entropy(head(h[idx]), y[idx], reduction="none")
            descend(optimizer, -(weights[idx] * ce).mean())

    choices = settings_choices(settings) | run_epochs(model, task, settings.epochs, epoch)
    return Unlearned(model, choices | {
        "batch_norm": BATCH_NORM_MODE,
        "records_kept": int((weights > 0).sum().item()),
        "influence_min": influence.min().item(), "influence_max": influence.max().item(),
        "weight_max": weights.max().item(),
    })
