"""The attacker's reference models: trained like the victim on halves of the shadow pool (disjoint from D,
validation and test), so they never saw any record of D. The shadow attack and LiRA both learn from them."""

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


def reference_halves(pool: Split, index: int, seed: int) -> tuple[Split, Split, Split]:
    """(members, non-members, early-stopping slice of the non-members) of reference model `index`."""
    gen = torch.Generator().manual_seed(seed + 7919 * (index + 1))
    order = torch.randperm(len(pool), generator=gen)
    half = len(pool) // 2
    members, nonmembers = pool.take(order[:half]), pool.take(order[half:2 * half])
    early_stop = nonmembers.take(torch.arange(min(len(nonmembers), max(1, half // 4))))
    return members, nonmembers, early_stop


def train_reference_model(pool: Split, build_model: Callable[[int], nn.Module], training: TrainingParams,
                          index: int, count: int, device: torch.device, seed: int,
                          progress: Progress | None = None) -> ReferenceModel:
    """Reference model `index` of `count`, alone: the same model whether trained in this loop or in another
    process (its data half, initialisation and shuffling depend on `seed` and `index` only)."""
    members, nonmembers, early_stop = reference_halves(pool, index, seed)
    model = build_model(seed + index + 1).to(device)

    def log(line: str) -> None:
        if progress:
            progress(f"reference model {index + 1} of {count}: {line}")

    train_model(model, members, early_stop, training, device, seed + index + 1, log)
    return ReferenceModel(model, members, nonmembers)


def rebuild_reference_model(pool: Split, build_model: Callable[[int], nn.Module], index: int, seed: int,
                            state: dict[str, torch.Tensor]) -> ReferenceModel:
    """Reference model `index` from weights trained elsewhere (train_reference_model in another process)."""
    members, nonmembers, _ = reference_halves(pool, index, seed)
    model = build_model(seed + index + 1)
    model.load_state_dict(state)
    return ReferenceModel(model, members, nonmembers)


def train_reference_models(pool: Split, build_model: Callable[[int], nn.Module], training: TrainingParams,
                           count: int, device: torch.device, seed: int,
                           progress: Progress | None = None) -> list[ReferenceModel]:
    """`count` models, each on a random half of the pool with the victim's recipe (early stopping on a slice of
    its own non-members), so they mimic the victim on data the victim never saw."""
    return [train_reference_model(pool, build_model, training, i, count, device, seed, progress)
            for i in range(count)]


# --- the paper's shadow-model attack ----------------------------------------------------------------------------
