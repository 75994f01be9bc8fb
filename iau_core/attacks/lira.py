"""Offline LiRA (Carlini et al. 2022): for each record, the reference models' confidences give its distribution when
it is *not* a member; a target model that is unusually confident on it (one-sided Gaussian test) is evidence of
membership. Per-example calibration is what the population attacks lack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from iau_core.attacks.base import Attack, AttackSetup, positions
from iau_core.attacks.references import ReferenceModel
from iau_core.config import LiraParams
from iau_core.data import Split
from iau_core.training import predict_logits


def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) log(p_y / (1 - p_y)), computed stably as z_y - logsumexp_{j != y} z_j: LiRA's confidence, which
    is close to Gaussian across models where p_y itself is not."""
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, y.unsqueeze(1), float("-inf"))
    return true - others.logsumexp(1)


@dataclass(frozen=True)
class LiraAttack(Attack):
    """Each candidate record's confidence when it is not a member: mean and standard deviation over the
    reference models. `ids` are the sample ids the statistics are for (D and the held-out test records)."""

    ids: np.ndarray  # (N,) sorted
    mean: np.ndarray  # (N,)
    std: np.ndarray  # (N,)

    def scores(self, target: nn.Module, split: Split, device: torch.device) -> np.ndarray:
        """(len(split),) the one-sided test statistic (phi - mean) / std: large when `target` is more confident
        on a record than models that never saw it. Refuses records it has no statistics for."""
        pos = positions(self.ids, split.ids.cpu().numpy(), "LiRA")
        phi = logit_confidence(predict_logits(target, split, device), split.y.cpu()).numpy()
        return (phi - self.mean[pos]) / self.std[pos]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids, "mean": self.mean, "std": self.std}


def fit_lira(references: list[ReferenceModel], candidates: Split, params: LiraParams,
             device: torch.device) -> LiraAttack:
    """Reference statistics for every candidate record. With few references, one pooled within-record standard
    deviation is steadier than each record's own (Carlini et al., Sec. VI); the AUC then depends only on the
    per-record means."""
    order = torch.argsort(candidates.ids.cpu())
    candidates = candidates.take(order)
    phi = torch.stack([logit_confidence(predict_logits(ref.model, candidates, device), candidates.y.cpu())
                       for ref in references]).numpy()  # (K, N)
    mean = phi.mean(0)
    if params.per_example_variance and len(references) > 1:
        std = phi.std(0, ddof=1)
    else:
        pooled = np.sqrt(((phi - mean) ** 2).sum() / max(1, phi.size - phi.shape[1]))
        std = np.full(phi.shape[1], pooled if pooled > 0 else 1.0)
    return LiraAttack(candidates.ids.cpu().numpy(), mean, np.maximum(std, 1e-6))


def fit(references: list[ReferenceModel], setup: AttackSetup) -> LiraAttack:
    """The registry's entry: statistics for every candidate record (D and the held-out test set), from every
    reference model given."""
    return fit_lira(references, setup.candidates, setup.params.lira, setup.device)


def restore(arrays: dict[str, np.ndarray], setup: AttackSetup) -> LiraAttack:
    return LiraAttack(arrays["ids"].copy(), arrays["mean"].copy(), arrays["std"].copy())
