"""What every attack is: fitted on the attacker's reference models, it gives each record a score under a target
model (higher = more likely a member); the ROC, its AUC and the TPR at 1% FPR are read off those scores in one place
(roc.py), so no two attacks summarise differently."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from iau_core.attacks.roc import Roc, roc
from iau_core.config import Params
from iau_core.data import Split


@dataclass(frozen=True)
class AttackSetup:
    """What an attack may use besides the reference models: the settings, the records it will be asked about
    (D and the held-out test set: per-record attacks precompute their statistics for these), and the attacker's
    own population data (the shadow pool, which the target never saw)."""

    params: Params
    candidates: Split
    population: Split
    num_classes: int
    device: torch.device
    seed: int


class Attack(ABC):
    """A fitted attack. `arrays` is what is stored to rebuild it (the module's `restore` reads it back)."""

    @abstractmethod
    def scores(self, target: nn.Module, split: Split, device: torch.device) -> np.ndarray:
        """(len(split),) membership scores of `split`'s records under `target`; higher = more likely member."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the fitted attack, as named arrays (empty: nothing to store)."""

    def roc(self, target: nn.Module, members: Split, nonmembers: Split, device: torch.device) -> Roc:
        return roc(self.scores(target, members, device), self.scores(target, nonmembers, device))


def positions(ids: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Where each of the `wanted` sample ids sits in the sorted `ids` a per-record attack holds statistics for; a
    clear error for records it has none for."""
    pos = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    if not np.array_equal(ids[pos], wanted):
        raise ValueError(f"{what} has no reference statistics for some of these records; fit it on them first")
    return pos
