"""The loss-threshold attack: needs no reference models (mia_auc)."""

from __future__ import annotations

import torch
from torch import nn

from iau_core.attacks.roc import Roc, roc
from iau_core.data import Split
from iau_core.training import per_sample_losses


def loss_attack(model: nn.Module, members: Split, nonmembers: Split, device: torch.device) -> Roc:
    """Loss-threshold attack: -loss as the member score."""
    return roc(-per_sample_losses(model, members, device).numpy(),
               -per_sample_losses(model, nonmembers, device).numpy())
