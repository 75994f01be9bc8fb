"""The attacker's reference models: trained like the victim on halves of the shadow pool (disjoint from D,
validation and test), so they never saw any record of D. Every registered attack learns from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from iau_core.config import TrainingParams
from iau_core.data import Split
from iau_core.training import Progress, train_model


@dataclass
class ReferenceModel:
    model: nn.Module
    members: Split  # its training half of the shadow pool
    nonmembers: Split  # the other half


def train_reference_models(pool: Split, build_model: Callable[[int], nn.Module], training: TrainingParams,
                           count: int, device: torch.device, seed: int,
                           progress: Progress | None = None) -> list[ReferenceModel]:
    """`count` models, each on a random half of the pool with the victim's recipe (early stopping on a slice of
    its own non-members), so they mimic the victim on data the victim never saw."""
    models = []
    for i in range(count):
        gen = torch.Generator().manual_seed(seed + 7919 * (i + 1))
        order = torch.randperm(len(pool), generator=gen)
        half = len(pool) // 2
        members, nonmembers = pool.take(order[:half]), pool.take(order[half:2 * half])
        early_stop = nonmembers.take(torch.arange(min(len(nonmembers), max(1, half // 4))))
        model = build_model(seed + i + 1).to(device)

        def log(line: str, i: int = i) -> None:
            if progress:
                progress(f"reference model {i + 1} of {count}: {line}")

        train_model(model, members, early_stop, training, device, seed + i + 1, log)
        models.append(ReferenceModel(model, members, nonmembers))
    return models


# --- the paper's shadow-model attack ----------------------------------------------------------------------------
