"""What the one-step methods share (iau, its ablations ia and ia_gc, and the nightly batch's cache): loss gradients
accumulated batch by batch, D's summed gradient (so a batch's step reads D_f only), a plain step, and the eta rule
that chooses the step's size from data a real deletion request has (D_f and the validation set), never from the
test set or a retrained model.

A nightly batch holds the deployed model's summed gradient over all of D (`SummedGradient`, computed once per
model off the critical path). Then sum_{D_r} = sum_D - sum_{D_f}, and the step needs a pass over D_f only: its
cost follows the batch, not the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import EtaRule, Reduction, UnlearningParams
from iau_core.data import Split
from iau_core.training import accuracy, batches, logits_accuracy, per_sample_losses, predict_logits


def loss_gradient(model: nn.Module, split: Split, batch_size: int, reduction: Reduction) -> list[torch.Tensor]:
    """grad_theta of the summed (or mean) cross-entropy over `split`, accumulated batch by batch, so memory
    follows the batch size and the result does not depend on it."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for idx in batches(len(split), batch_size):
        idx = idx.to(split.x.device)
        loss = F.cross_entropy(model(split.x[idx]), split.y[idx], reduction="sum")
        for acc, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc.add_(g)
    return [g / len(split) for g in total] if reduction == "mean" else total


@dataclass(frozen=True)
class SummedGradient:
    """sum over D of grad loss at the deployed parameters (model in eval mode), and which records D held.

    Valid only for the exact parameters it was computed at and for that D; `ids_sha256` lets a user check the
    second (iau_core.selection.forget_set_sha256 of D's ids)."""

    grads: list[torch.Tensor]
    count: int
    ids_sha256: str

    def to(self, device: torch.device) -> SummedGradient:
        return SummedGradient([g.to(device) for g in self.grads], self.count, self.ids_sha256)


def summed_gradient(model: nn.Module, train: Split, batch_size: int) -> SummedGradient:
    """The cache a deletion batch starts from: one pass over D at the model as deployed (eval mode)."""
    from iau_core.selection import forget_set_sha256  # late: selection pulls in scikit-learn

    was_training = model.training
    grads = loss_gradient(model.eval(), train, batch_size, "sum")
    model.train(was_training)
    return SummedGradient(grads, len(train), forget_set_sha256(train.ids.cpu().numpy()))


def iau_direction(model: nn.Module, retain: Split, forget: Split, batch_size: int, reduction: Reduction,
                  cached: SummedGradient | None = None) -> list[torch.Tensor]:
    """Eq. 8's bracket: the retained set's gradient minus the forget set's.

    With `cached` (D's summed gradient at these parameters) the retained set's gradient is cached - sum over D_f,
    so `retain` is not read at all."""
    if cached is None:
        g_retain = loss_gradient(model, retain, batch_size, reduction)
        g_forget = loss_gradient(model, forget, batch_size, reduction)
        return [r - f for r, f in zip(g_retain, g_forget, strict=True)]
    f_sum = loss_gradient(model, forget, batch_size, "sum")
    retained = cached.count - len(forget)
    if retained <= 0:
        raise ValueError(f"the forget set ({len(forget)} records) is not a strict part of the cached D "
                         f"({cached.count} records)")
    if reduction == "sum":
        return [(c - f) - f for c, f in zip(cached.grads, f_sum, strict=True)]
    return [(c - f) / retained - f / len(forget) for c, f in zip(cached.grads, f_sum, strict=True)]


def step(model: nn.Module, theta: list[torch.Tensor], direction: list[torch.Tensor], eta: float) -> None:
    """Set the model's parameters to theta - eta * direction, in place."""
    with torch.no_grad():
        for p, t, d in zip((p for p in model.parameters() if p.requires_grad), theta, direction, strict=True):
            p.copy_(t - eta * d)


@dataclass(frozen=True)
class EtaChoice:
    eta: float
    reason: str  # which condition of the rule ended the scan
    target_loss: float  # the validation set's mean loss under the deployed model
    forget_loss: float  # D_f's mean loss after the chosen step
    val_acc_drop: float  # validation-accuracy points the chosen step costs
    candidates: int

    def as_choices(self) -> dict[str, str | float | int]:
        return {"eta_chosen": self.eta, "eta_rule.reason": self.reason, "eta_rule.target_loss": self.target_loss,
                "eta_rule.forget_loss": self.forget_loss, "eta_rule.val_acc_drop": self.val_acc_drop,
                "eta_rule.candidates": self.candidates}


def choose_eta(model: nn.Module, direction: list[torch.Tensor], forget: Split, val: Split, rule: EtaRule,
               device: torch.device) -> EtaChoice:
    """Scan eta = start * growth^k upwards. Stop at the first step that brings D_f's mean loss up to the
    validation set's (D_f then looks like data the model never saw); if the validation accuracy would fall by
    more than the budget first, keep the last step within it (0 when even the first is too much).

    Leaves the model at the chosen step."""
    theta = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    val_logits = predict_logits(model, val, device)  # one pass: the target loss and the accuracy to keep
    target = F.cross_entropy(val_logits, val.y.cpu()).item()
    base_acc = logits_accuracy(val_logits, val.y.cpu())
    chosen = EtaChoice(0.0, "no step within the validation budget", target,
                       per_sample_losses(model, forget, device).mean().item(), 0.0, 0)
    for k in range(rule.max_candidates):
        eta = rule.start * rule.growth ** k
        step(model, theta, direction, eta)
        drop = base_acc - accuracy(model, val, device)
        if drop > rule.val_drop_budget:
            chosen = EtaChoice(chosen.eta, f"validation budget of {rule.val_drop_budget} points reached",
                               target, chosen.forget_loss, chosen.val_acc_drop, k + 1)
            break
        forget_loss = per_sample_losses(model, forget, device).mean().item()
        chosen = EtaChoice(eta, "largest candidate tried", target, forget_loss, drop, k + 1)
        if forget_loss >= target:
            chosen = EtaChoice(eta, "D_f's loss reached the validation loss", target, forget_loss, drop, k + 1)
            break
    step(model, theta, direction, chosen.eta)
    return chosen


def take_step(model: nn.Module, direction: list[torch.Tensor], forget: Split, val: Split,
              settings: UnlearningParams, device: torch.device) -> dict[str, str | float | int]:
    """theta <- theta - eta * direction with eta fixed by `settings.eta` or chosen by its eta rule ('auto'); returns
    the step's settings and choices as MLflow params."""
    choices: dict[str, str | float | int] = {"reduction": settings.reduction, "eta": str(settings.eta),
                                             "batch_size": settings.batch_size}
    if settings.eta == "auto":
        choices |= {f"eta_rule.{k}": v for k, v in settings.eta_rule.model_dump().items()}
        return choices | choose_eta(model, direction, forget, val, settings.eta_rule, device).as_choices()
    step(model, [p.detach().clone() for p in model.parameters() if p.requires_grad], direction, settings.eta)
    return choices | {"eta_chosen": settings.eta}
