"""What the iterative baselines share: their optimizer, seeded batches and relabelling, and the one stop rule
every one of them obeys (iau_core.config.unlearning.StopRule), so their schedules differ only where their papers do."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import Section, StopRule
from iau_core.data import Split
from iau_core.training import accuracy, batches, logits_accuracy, per_sample_losses, predict_logits
from iau_core.unlearning.base import UnlearningTask
from iau_core.unlearning.self_check import SelfCheck


def seeded(task: UnlearningTask, salt: int = 0) -> torch.Generator:
    """A generator for a method's shuffling and random labels: the repeat's seed, so reruns agree."""
    return torch.Generator().manual_seed(task.seed * 1_000 + salt)


def shuffled(split: Split, batch_size: int, generator: torch.Generator) -> Iterator[Split]:
    """Mini-batches of `split` in a seeded random order (indices on the split's device)."""
    for idx in batches(len(split), batch_size, generator):
        yield split.take(idx.to(split.x.device))


def cycled(split: Split, batch_size: int, generator: torch.Generator) -> Iterator[Split]:
    """Endless shuffled mini-batches: a small D_f paired batch by batch with a large D_r."""
    while True:
        yield from shuffled(split, batch_size, generator)


def joined(a: Split, b: Split) -> Split:
    return Split(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), torch.cat([a.ids, b.ids]))


def num_classes(model: nn.Module, split: Split) -> int:
    with torch.no_grad():
        return int(model(split.x[:1]).shape[1])


def random_labels(y: torch.Tensor, classes: int, generator: torch.Generator, wrong_only: bool) -> torch.Tensor:
    """Uniform random labels; with wrong_only each differs from the true one (Amnesiac's 'incorrect labels')."""
    if wrong_only:
        shift = torch.randint(1, classes, y.shape, generator=generator).to(y.device)
        return (y + shift) % classes
    return torch.randint(0, classes, y.shape, generator=generator).to(y.device)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def cross_entropy(model: nn.Module, batch: Split) -> torch.Tensor:
    return F.cross_entropy(model(batch.x), batch.y)


def settings_choices(settings: Section) -> dict[str, str | float | int]:
    """A method's settings as MLflow params, so its run shows the values it used."""
    return {k: v if isinstance(v, int | float) else str(v) for k, v in settings.model_dump().items()}


def run_epochs(model: nn.Module, task: UnlearningTask, epochs: int,
               one_epoch: Callable[[int], None]) -> dict[str, str | float | int]:
    """Run `one_epoch(1..epochs)` on `model` under the stop rule; returns what the rule decided.

    After each epoch: if the validation accuracy has fallen more than the budget below the deployed model's, the
    epoch is undone and the method stops (over_budget stop), or it is only never returned and training goes on
    (over_budget continue: a method whose first epochs cost accuracy may recover it). Otherwise, once the rule's
    target is met, it stops there: D_f's mean loss has reached the validation set's (target heldout_loss), or the
    self-check passes (target self_check: self_check.py). `model` is left at the last epoch kept."""
    rule: StopRule = task.unlearning.stop_rule
    val_logits = predict_logits(task.model, task.val, task.device)
    target = F.cross_entropy(val_logits, task.val.y.cpu()).item()
    base_acc = logits_accuracy(val_logits, task.val.y.cpu())
    kept, kept_epochs, drop = copy.deepcopy(model.state_dict()), 0, 0.0
    forget_loss = per_sample_losses(model, task.forget, task.device).mean().item()
    check = SelfCheck.of(task.forget, task.val, rule.chance_z, task.device, task.seed) \
        if rule.target == "self_check" else None
    check_auc = float("nan")
    reason = f"all {epochs} epochs run"
    for epoch in range(1, epochs + 1):
        model.train()
        one_epoch(epoch)
        epoch_drop = base_acc - accuracy(model, task.val, task.device)
        if epoch_drop > rule.val_drop_budget:
            reason = f"epoch {epoch} would cost more than {rule.val_drop_budget} validation points"
            if rule.over_budget == "stop":
                break
            continue  # over_budget continue: this epoch is never returned, but a later one may recover
        kept, kept_epochs, drop = copy.deepcopy(model.state_dict()), epoch, epoch_drop
        reason = f"all {epochs} epochs run"
        forget_loss = per_sample_losses(model, task.forget, task.device).mean().item()
        if task.observe:
            task.observe(epoch, model)
        if check is not None:
            check_auc = check.auc(model)
            if rule.stop_at_heldout_loss and check_auc <= check.limit:
                reason = f"the self-check's AUC {check_auc:.3f} is within chance (<= {check.limit:.3f})"
                break
        elif rule.stop_at_heldout_loss and forget_loss >= target:
            reason = "D_f's loss reached the validation loss"
            break
    if kept_epochs != epoch:  # the last epoch run was over budget: back to the last one kept
        model.load_state_dict(kept)
        reason += f"; epoch {kept_epochs} kept" if kept_epochs else "; the deployed model kept"
    model.eval()
    return {"stop_rule.reason": reason, "epochs_kept": kept_epochs, "stop_rule.target_loss": target,
            "stop_rule.forget_loss": forget_loss, "stop_rule.val_acc_drop": drop,
            "stop_rule.val_drop_budget": rule.val_drop_budget, "stop_rule.target": rule.target,
            **({"stop_rule.self_check_auc": check_auc, "stop_rule.self_check_limit": check.limit} if check else {})}
