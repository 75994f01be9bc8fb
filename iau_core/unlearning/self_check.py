"""The self-check: whether a model still tells D_f from records it never saw, read from what a real deletion request
has (the model, D_f and the validation set), never the test set, the attacker's reference models or a retrained
model.

It is the loss attack's AUC on D_f against validation records of D_f's label mix (iau_core.attacks.label_matched):
0.5 when the model treats D_f as it treats unseen data. It passes at or below 0.5 + z standard deviations of the AUC
of two same-distribution samples of these sizes (the Mann-Whitney null, as the nightly gate sizes its threshold).
The gate and the studies judge with another attack (the headline one, with reference models) on other non-members
(the test set), so a method stopped by this check is not graded by the check that stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from iau_core.attacks import label_matched, loss_attack
from iau_core.data import Split
from iau_core.deletion import chance_auc_std


@dataclass(frozen=True)
class SelfCheck:
    forget: Split
    nonmembers: Split  # validation records of D_f's label mix
    limit: float
    device: torch.device

    @staticmethod
    def of(forget: Split, val: Split, z: float, device: torch.device, seed: int) -> SelfCheck:
        nonmembers = label_matched(val, forget, seed)
        return SelfCheck(forget, nonmembers, 0.5 + z * chance_auc_std(len(forget), len(nonmembers)), device)

    def auc(self, model: nn.Module) -> float:
        """The loss attack's AUC; NaN (which never passes) for a model whose losses are not finite."""
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            return float("nan")
        return loss_attack(model, self.forget, self.nonmembers, self.device).auc

    def passes(self, model: nn.Module) -> bool:
        return self.auc(model) <= self.limit
