"""What the one-step methods share (iau, its ablations ia and ia_gc, and the nightly batch's cache): loss gradients
accumulated batch by batch, D's summed gradient (so a batch's step reads D_f only), a plain step, and the eta rule
that chooses the step's size from data a real deletion request has (D_f and the validation set), never from the
test set or a retrained model.

A nightly batch holds the deployed model's summed gradient over all of D (`SummedGradient`, left by the previous
batch off the critical path: unlearning.refresh). Then sum_{D_r} = sum_D - sum_{D_f}, and the step needs a pass
over D_f only: its cost follows the batch, not the data. The same cache holds the deployed model's validation
logits, the eta rule's starting point, so a cached step reads the validation set once (at the step it chooses),
not twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import EtaRule, Reduction, UnlearningParams
from iau_core.data import Split
from iau_core.training import batches, per_sample_losses, predict_logits


def loss_gradient(model: nn.Module, split: Split, batch_size: int, reduction: Reduction) -> list[torch.Tensor]:
    """grad_theta of the summed (or mean) cross-entropy over `split`, accumulated batch by batch, so memory
    follows the batch size and the result does not depend on it."""
    _, grads = summed_loss_and_gradient(model, split, batch_size)
    return [g / len(split) for g in grads] if reduction == "mean" else grads


def summed_loss_and_gradient(model: nn.Module, split: Split, batch_size: int) -> tuple[float, list[torch.Tensor]]:
    """The summed cross-entropy over `split` and its gradient, from the same batch-by-batch pass."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    summed = torch.zeros((), device=split.x.device)
    for idx in batches(len(split), batch_size):
        idx = idx.to(split.x.device)
        loss = F.cross_entropy(model(split.x[idx]), split.y[idx], reduction="sum")
        for acc, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc.add_(g)
        summed += loss.detach()
    return summed.item(), total


@dataclass(frozen=True)
class ForgetLine:
    """D_f's mean loss at the deployed parameters and its derivative in eta along theta - eta * direction. Both
    come free with the gradient pass over D_f; the eta rule starts its scan where this tangent line reaches the
    target loss, instead of at the smallest candidate (choose_eta)."""

    loss: float
    slope: float

    @staticmethod
    def along(direction: list[torch.Tensor], forget_loss_sum: float, forget_grad_sum: list[torch.Tensor],
              forget_size: int) -> ForgetLine:
        inner = torch.stack([(g * d).sum() for g, d in zip(forget_grad_sum, direction, strict=True)]).sum()
        return ForgetLine(forget_loss_sum / forget_size, -inner.item() / forget_size)

    def start_index(self, target: float, etas: list[float]) -> int | None:
        """The last candidate at or below the eta where the line reaches `target` (the first candidate when none
        is); None when the line does not rise (no prediction: the rule scans from the smallest candidate).

        Why below: where D_f's loss curves upward along the step (measured: the usual case) the tangent lies
        under it and reaches the target later than the loss does, so the crossing is at this candidate or the
        next; on digits it was, or one below."""
        if not (math.isfinite(self.slope) and math.isfinite(self.loss)) or self.slope <= 0:
            return None
        predicted = (target - self.loss) / self.slope
        return max(0, sum(1 for eta in etas if eta <= predicted) - 1)


@dataclass(frozen=True)
class SummedGradient:
    """sum over D of grad loss at the deployed parameters (model in eval mode), and which records D held.

    Valid only for the exact parameters it was computed at and for that D; `ids_sha256` lets a user check the
    second (iau_core.selection.forget_set_sha256 of D's ids)."""

    grads: list[torch.Tensor]
    count: int
    ids_sha256: str
    # The deployed model's logits on the validation set (on the CPU) and which records that set held: the eta
    # rule's target loss and the accuracy to keep. None when not cached (the rule then reads the set itself).
    val_logits: torch.Tensor | None = None
    val_ids_sha256: str | None = None
    # How the cache was made (iau_core.unlearning.refresh): nightly batches since D's gradient was last computed
    # in full (0: this one was), and the estimated relative error accumulated since then (0 when exact).
    batches_since_exact: int = 0
    drift: float = 0.0

    def to(self, device: torch.device) -> SummedGradient:
        return replace(self, grads=[g.to(device) for g in self.grads])

    def val_logits_for(self, val: Split) -> torch.Tensor | None:
        """The cached validation logits if they were computed on exactly this validation set, else None."""
        if self.val_logits is None or len(self.val_logits) != len(val) or self.val_ids_sha256 != ids_sha256(val):
            return None
        return self.val_logits


def ids_sha256(split: Split) -> str:
    from iau_core.selection import forget_set_sha256  # late: selection pulls in scikit-learn

    return forget_set_sha256(split.ids.cpu().numpy())


def summed_gradient(model: nn.Module, train: Split, batch_size: int, val: Split | None = None) -> SummedGradient:
    """The cache a deletion batch starts from: one pass over D at the model as deployed (eval mode), and with
    `val` one forward pass over the validation set."""
    was_training = model.training
    grads = loss_gradient(model.eval(), train, batch_size, "sum")
    logits = predict_logits(model, val, next(model.parameters()).device) if val is not None else None
    model.train(was_training)
    return SummedGradient(grads, len(train), ids_sha256(train), logits,
                          ids_sha256(val) if val is not None else None)


def iau_direction(model: nn.Module, retain: Split, forget: Split, batch_size: int, reduction: Reduction,
                  cached: SummedGradient | None = None) -> list[torch.Tensor]:
    """Eq. 8's bracket: the retained set's gradient minus the forget set's.

    With `cached` (D's summed gradient at these parameters) the retained set's gradient is cached - sum over D_f,
    so `retain` is not read at all."""
    return iau_direction_and_line(model, retain, forget, batch_size, reduction, cached)[0]


def iau_direction_and_line(model: nn.Module, retain: Split, forget: Split, batch_size: int, reduction: Reduction,
                           cached: SummedGradient | None = None) -> tuple[list[torch.Tensor], ForgetLine]:
    """iau_direction, and D_f's loss line along it from the same pass (ForgetLine)."""
    f_loss, f_sum = summed_loss_and_gradient(model, forget, batch_size)
    if cached is None:
        g_retain = loss_gradient(model, retain, batch_size, reduction)
        g_forget = [f / len(forget) for f in f_sum] if reduction == "mean" else f_sum
        direction = [r - f for r, f in zip(g_retain, g_forget, strict=True)]
    else:
        retained = cached.count - len(forget)
        if retained <= 0:
            raise ValueError(f"the forget set ({len(forget)} records) is not a strict part of the cached D "
                             f"({cached.count} records)")
        if reduction == "sum":
            direction = [(c - f) - f for c, f in zip(cached.grads, f_sum, strict=True)]
        else:
            direction = [(c - f) / retained - f / len(forget) for c, f in zip(cached.grads, f_sum, strict=True)]
    return direction, ForgetLine.along(direction, f_loss, f_sum, len(forget))


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
    validation_passes: int  # full passes over the validation set, the deployed model's included (2; 1 cached)

    def as_choices(self) -> dict[str, str | float | int]:
        return {"eta_chosen": self.eta, "eta_rule.reason": self.reason, "eta_rule.target_loss": self.target_loss,
                "eta_rule.forget_loss": self.forget_loss, "eta_rule.val_acc_drop": self.val_acc_drop,
                "eta_rule.candidates": self.candidates, "eta_rule.validation_passes": self.validation_passes}


def choose_eta(model: nn.Module, direction: list[torch.Tensor], forget: Split, val: Split, rule: EtaRule,
               device: torch.device, base_logits: torch.Tensor | None = None,
               line: ForgetLine | None = None, confirm: bool = False) -> EtaChoice:
    """Take the first eta = start * growth^k at which D_f's mean loss reaches the validation set's (D_f then
    looks like data the model never saw); if that step costs more than `val_drop_budget` validation-accuracy
    points, the last candidate below the first one over budget (no step when even the first is).

    Why not read the validation set at every candidate: that made up to 17 passes, 95% of the method's time.
    Here a fixed number of full passes, 2, or 1 with `base_logits`: (1) the deployed model's, for the target loss
    and the accuracy to keep; then a scan that reads only D_f (small) finds the step; (2) the validation set at
    that step. When it is over budget the candidates below are read on the validation records whose prediction
    that step changed only (a few percent of the set: a record the step leaves as it was is taken as unchanged
    below it too), and the chosen step's drop is read on them too. The same choice as reading every candidate in
    full unless a record changes and changes back inside the scanned range (tests/test_unlearning.py compares the
    two rules); the gate measures the real drop of every batch. Why fixed: an extra full pass on the over-budget
    path doubled the cached step's seconds for some models and not others (issue 29). `confirm` restores it: (3)
    one full pass confirms the step so chosen, widening the suspects with the records it finds changed, the rule
    as it was (tests/test_gradient_cache.py: both choose the same step unless that pass finds such a record).

    The scan over D_f reads every `SCAN_STRIDE`-th candidate until D_f's loss reaches the target, then bisects
    the candidates in between: the first crossing on the same grid, in about a third of the reads, as long as
    D_f's loss does not fall back below the target between two read candidates (it grows with eta along this
    ascent direction). With `line` (D_f's loss and slope at eta = 0, known from the gradient pass) the scan
    starts instead at the last candidate at or below the eta where that tangent line reaches the target
    (ForgetLine.start_index) and steps 1, 1, 2, 4, ... away from it: the same first crossing under the same
    assumption, in 2 reads when the line predicts the crossing or the candidate before it. `base_logits`: the
    deployed model's validation logits if already known (the nightly cache, SummedGradient.val_logits_for):
    pass 1 is then skipped.

    Leaves the model at the chosen step."""
    theta = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    passes_before = 0 if base_logits is not None else 1
    if base_logits is None:
        base_logits = predict_logits(model, val, device)  # pass 1
    target = F.cross_entropy(base_logits, val.y.cpu()).item()
    base_correct = base_logits.argmax(1) == val.y.cpu()
    etas = [rule.start * rule.growth ** k for k in range(rule.max_candidates)]

    def at(eta: float, split: Split) -> torch.Tensor:  # which records of `split` the step predicts right
        step(model, theta, direction, eta)
        return predict_logits(model, split, device).argmax(1) == split.y.cpu()

    def drop(correct: torch.Tensor) -> float:
        return 100.0 * (base_correct.sum().item() - correct.sum().item()) / len(val)

    forget_losses: dict[int, float] = {}

    def forget_loss(k: int) -> float:
        if k not in forget_losses:
            step(model, theta, direction, etas[k])
            forget_losses[k] = per_sample_losses(model, forget, device).mean().item()
        return forget_losses[k]

    found = _first_reaching(forget_loss, target, len(etas), line.start_index(target, etas) if line else None)
    scanned = len(forget_losses)
    correct = at(etas[found], val)  # pass 2
    if drop(correct) <= rule.val_drop_budget:
        reason = "D_f's loss reached the validation loss" if forget_loss(found) >= target else \
            "largest candidate tried"
        return EtaChoice(etas[found], reason, target, forget_loss(found), drop(correct), scanned,
                         passes_before + 1)

    reason = f"validation budget of {rule.val_drop_budget} points reached"
    suspects = torch.nonzero(correct != base_correct).flatten()
    kept = _last_before_budget(etas[:found], val, suspects, base_correct, rule.val_drop_budget, at)
    passes, val_drop = passes_before + 1, 0.0
    if kept >= 0 and not confirm:  # the drop read on the suspects; the gate measures the real one
        val_drop = _estimated_drop(at(etas[kept], val.take(suspects)), suspects, base_correct)
    elif kept >= 0:
        correct = at(etas[kept], val)  # pass 3
        passes, val_drop = passes_before + 2, drop(correct)
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
    loss_kept = forget_loss(kept)
    step(model, theta, direction, etas[kept])
    return EtaChoice(etas[kept], reason, target, loss_kept, val_drop, scanned, passes)


SCAN_STRIDE = 4  # candidates skipped per read while scanning D_f's loss (growth 2: a factor 16 per read)


def _first_reaching(loss: Callable[[int], float], target: float, count: int, start: int | None = None) -> int:
    """The first index k < count with loss(k) >= target (count - 1 when none reaches it), for a loss that grows
    with k: a bracket below < k <= high is found by reading every SCAN_STRIDE-th index (or, from `start`, by
    steps of 1, 1, 2, 4, ... away from it), then bisected."""
    below, high = _stride_bracket(loss, target, count) if start is None else \
        _bracket_around(loss, target, count, start)
    if high is None:
        return count - 1
    while high - below > 1:  # invariant: loss(below) < target <= loss(high) (below = -1: before the first)
        middle = (below + high) // 2
        if loss(middle) >= target:
            high = middle
        else:
            below = middle
    return high


def _stride_bracket(loss: Callable[[int], float], target: float, count: int) -> tuple[int, int | None]:
    below = -1
    for k in range(SCAN_STRIDE - 1, count - 1 + SCAN_STRIDE, SCAN_STRIDE):
        k = min(k, count - 1)
        if loss(k) >= target:
            return below, k
        below = k
    return below, None


def _bracket_around(loss: Callable[[int], float], target: float, count: int, start: int) -> tuple[int, int | None]:
    k, gaps = min(max(start, 0), count - 1), _gaps()
    if loss(k) >= target:  # the crossing is at k or below: step down until a read falls short
        while k > 0:
            below = max(k - next(gaps), 0)
            if loss(below) < target:
                return below, k
            k = below
        return -1, 0
    while k < count - 1:  # below: step up until a read reaches the target
        high = min(k + next(gaps), count - 1)
        if loss(high) >= target:
            return k, high
        k = high
    return k, None


def _gaps() -> Iterator[int]:
    """1, 1, 2, 4, 8, ...: a prediction is most often right or one candidate off, rarely far."""
    yield 1
    gap = 1
    while True:
        yield gap
        gap *= 2


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
              settings: UnlearningParams, device: torch.device, base_logits: torch.Tensor | None = None,
              line: ForgetLine | None = None) -> dict[str, str | float | int]:
    """theta <- theta - eta * direction with eta fixed by `settings.eta` or chosen by its eta rule ('auto'); returns
    the step's settings and choices as MLflow params. `base_logits`: the deployed model's validation logits, if
    cached, and D_f's loss line along `direction` (choose_eta)."""
    choices: dict[str, str | float | int] = {"reduction": settings.reduction, "eta": str(settings.eta),
                                             "batch_size": settings.batch_size}
    if settings.eta == "auto":
        choices |= {f"eta_rule.{k}": v for k, v in settings.eta_rule.model_dump().items()}
        return choices | choose_eta(model, direction, forget, val, settings.eta_rule, device, base_logits,
                                    line).as_choices()
    step(model, [p.detach().clone() for p in model.parameters() if p.requires_grad], direction, settings.eta)
    return choices | {"eta_chosen": settings.eta}
