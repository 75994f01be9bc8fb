"""What the one-step methods share (iau, its ablations ia and ia_gc, and the nightly batch's cache): loss gradients
accumulated batch by batch, D's summed gradient (so a batch's step reads D_f only), a plain step, and the eta rule
that chooses the step's size from data a real deletion request has (D_f and the validation set), never from the
test set or a retrained model.

A nightly batch holds the deployed model's summed gradient over all of D (`SummedGradient`, computed once per
model off the critical path). Then sum_{D_r} = sum_D - sum_{D_f}, and the step needs a pass over D_f only: its
cost follows the batch, not the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import EtaRule, Reduction, UnlearningParams
from iau_core.data import Split
from iau_core.training import batches, per_sample_losses, predict_logits


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
    candidates: int  # eta values at which D_f's loss was read
    validation_passes: int  # full passes over the validation set, the deployed model's included (at most 3)

    def as_choices(self) -> dict[str, str | float | int]:
        return {"eta_chosen": self.eta, "eta_rule.reason": self.reason, "eta_rule.target_loss": self.target_loss,
                "eta_rule.forget_loss": self.forget_loss, "eta_rule.val_acc_drop": self.val_acc_drop,
                "eta_rule.candidates": self.candidates, "eta_rule.validation_passes": self.validation_passes}


def choose_eta(model: nn.Module, direction: list[torch.Tensor], forget: Split, val: Split, rule: EtaRule,
               device: torch.device) -> EtaChoice:
    """Take the first eta = start * growth^k at which D_f's mean loss reaches the validation set's (D_f then
    looks like data the model never saw); if that step costs more than `val_drop_budget` validation-accuracy
    points, the last candidate below the first one over budget (no step when even the first is).

    Why not read the validation set at every candidate: that made up to 17 passes, 95% of the method's time.
    Here at most 3 full passes: (1) the deployed model's, for the target loss and the accuracy to keep; then a
    scan that reads only D_f (small) finds the step; (2) the validation set at that step. Only when it is over
    budget are the candidates below read, on the validation records whose prediction that step changed (a few
    percent of the set: a record the step leaves as it was is taken as unchanged below it too), and (3) one
    full pass confirms the step so chosen. The same choice as reading every candidate in full unless a record
    changes and changes back inside the scanned range (tests/test_unlearning.py compares the two rules).

    Leaves the model at the chosen step."""
    theta = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    base_logits = predict_logits(model, val, device)  # pass 1
    target = F.cross_entropy(base_logits, val.y.cpu()).item()
    base_correct = base_logits.argmax(1) == val.y.cpu()
    etas = [rule.start * rule.growth ** k for k in range(rule.max_candidates)]

    def at(eta: float, split: Split) -> torch.Tensor:  # which records of `split` the step predicts right
        step(model, theta, direction, eta)
        return predict_logits(model, split, device).argmax(1) == split.y.cpu()

    def drop(correct: torch.Tensor) -> float:
        return 100.0 * (base_correct.sum().item() - correct.sum().item()) / len(val)

    forget_losses: list[float] = []
    for eta in etas:
        step(model, theta, direction, eta)
        forget_losses.append(per_sample_losses(model, forget, device).mean().item())
        if forget_losses[-1] >= target:
            break
    found, scanned = len(forget_losses) - 1, len(forget_losses)
    correct = at(etas[found], val)  # pass 2
    if drop(correct) <= rule.val_drop_budget:
        reason = "D_f's loss reached the validation loss" if forget_losses[-1] >= target else \
            "largest candidate tried"
        return EtaChoice(etas[found], reason, target, forget_losses[found], drop(correct), scanned, 2)

    reason = f"validation budget of {rule.val_drop_budget} points reached"
    suspects = torch.nonzero(correct != base_correct).flatten()
    kept = _last_before_budget(etas[:found], val, suspects, base_correct, rule.val_drop_budget, at)
    passes, val_drop = 2, 0.0
    if kept >= 0:
        correct = at(etas[kept], val)  # pass 3
        passes, val_drop = 3, drop(correct)
        if val_drop > rule.val_drop_budget:  # a record outside `suspects` flipped below: widen them, no 4th pass
            suspects = torch.unique(torch.cat([suspects, torch.nonzero(correct != base_correct).flatten()]))
            kept = _last_before_budget(etas[:kept], val, suspects, base_correct, rule.val_drop_budget, at)
            reason += " (the step below the confirmed one, read on the records that changed)"
            if kept >= 0:
                val_drop = _estimated_drop(at(etas[kept], val.take(suspects)), suspects, base_correct)
    if kept < 0:
        step(model, theta, direction, 0.0)
        return EtaChoice(0.0, reason, target, per_sample_losses(model, forget, device).mean().item(), 0.0, scanned,
                         passes)
    step(model, theta, direction, etas[kept])
    return EtaChoice(etas[kept], reason, target, forget_losses[kept], val_drop, scanned, passes)


def _estimated_drop(correct_suspects: torch.Tensor, suspects: torch.Tensor, base_correct: torch.Tensor) -> float:
    """Validation-accuracy points lost when only the `suspects` may have changed."""
    lost = base_correct[suspects].sum().item() - correct_suspects.sum().item()
    return 100.0 * lost / len(base_correct)


def _last_before_budget(etas: list[float], val: Split, suspects: torch.Tensor, base_correct: torch.Tensor,
                        budget: float, at: Callable[[float, Split], torch.Tensor]) -> int:
    """Index of the candidate before the first whose drop, read on the suspects only, is over budget (-1: the
    first already is); the last index when none is."""
    subset = val.take(suspects.cpu())
    for k, eta in enumerate(etas):
        if _estimated_drop(at(eta, subset), suspects, base_correct) > budget:
            return k - 1
    return len(etas) - 1


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
