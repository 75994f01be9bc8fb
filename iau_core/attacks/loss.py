"""The loss-threshold attack: needs no reference models (mia_auc). Its score is -loss: a member's loss is low."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from iau_core.attacks.base import Attack, AttackSetup
from iau_core.attacks.references import ReferenceModel
from iau_core.attacks.roc import Roc
from iau_core.data import Split
from iau_core.training import per_sample_losses


class LossAttack(Attack):
    def scores(self, target: nn.Module, split: Split, device: torch.device) -> np.ndarray:
        return -per_sample_losses(target, split, device).numpy()

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


def fit(references: list[ReferenceModel], setup: AttackSetup) -> LossAttack:
    return LossAttack()  # nothing to learn


def restore(arrays: dict[str, np.ndarray], setup: AttackSetup) -> LossAttack:
    return LossAttack()


def loss_attack(model: nn.Module, members: Split, nonmembers: Split, device: torch.device) -> Roc:
    """Loss-threshold attack: -loss as the member score."""
    return LossAttack().roc(model, members, nonmembers, device)
