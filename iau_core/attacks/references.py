"""The attacker's reference models: trained like the victim on halves of the shadow pool (disjoint from D,
validation and test), so they never saw any record of D. Every registered attack learns from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from iau_core.config import TrainingParams
from iau_core.data import Split
from iau_core.ensemble_training import can_train_together, train_models_together
from iau_core.training import Progress, train_model


@dataclass
class ReferenceModel:
    model: nn.Module
    members: Split  # its training half of the shadow pool
    nonmembers: Split  # the other half


ReferenceTraining = Literal["ensemble", "sequential"]


def reference_halves(pool: Split, seed: int, index: int) -> tuple[Split, Split, Split]:
    """Reference model `index`'s (members, non-members, early-stopping slice of its non-members): a random half
    of the pool drawn from its own seed, so any one model can be trained alone, on any worker."""
    gen = torch.Generator().manual_seed(seed + 7919 * (index + 1))
    order = torch.randperm(len(pool), generator=gen)
    half = len(pool) // 2
    members, nonmembers = pool.take(order[:half]), pool.take(order[half:2 * half])
    early_stop = nonmembers.take(torch.arange(min(len(nonmembers), max(1, half // 4))))
    return members, nonmembers, early_stop


def train_reference_model(pool: Split, build_model: Callable[[int], nn.Module], training: TrainingParams,
                          index: int, count: int, device: torch.device, seed: int,
                          progress: Progress | None = None) -> ReferenceModel:
    """Reference model `index` of `count`, alone: the victim's recipe on its half of the pool (early stopping on
    a slice of its own non-members), so it mimics the victim on data the victim never saw."""
    members, nonmembers, early_stop = reference_halves(pool, seed, index)
    model = build_model(seed + index + 1).to(device)

    def log(line: str) -> None:
        if progress:
            progress(f"reference model {index + 1} of {count}: {line}")

    train_model(model, members, early_stop, training, device, seed + index + 1, log)
    return ReferenceModel(model, members, nonmembers)


def rebuild_reference_model(pool: Split, build_model: Callable[[int], nn.Module], index: int, seed: int,
                            state: dict[str, torch.Tensor]) -> ReferenceModel:
    """Reference model `index` from weights trained elsewhere (train_reference_model in another process)."""
    members, nonmembers, _ = reference_halves(pool, seed, index)
    model = build_model(seed + index + 1)
    model.load_state_dict(state)
    return ReferenceModel(model, members, nonmembers)


def train_reference_models(pool: Split, build_model: Callable[[int], nn.Module], training: TrainingParams,
                           count: int, device: torch.device, seed: int, progress: Progress | None = None,
                           mode: ReferenceTraining = "sequential") -> list[ReferenceModel]:
    """`count` reference models, each as train_reference_model trains it. `ensemble` trains them at once
    (iau_core/ensemble_training.py: the same models up to float rounding, several times faster on small models);
    a model with batch norm or dropout is trained one by one whatever the mode."""
    if mode == "ensemble" and count > 1:
        models = [build_model(seed + i + 1).to(device) for i in range(count)]
        if all(can_train_together(m) for m in models):
            halves = [reference_halves(pool, seed, i) for i in range(count)]

            def log(line: str) -> None:
                if progress:
                    progress(f"reference models 1-{count} together: {line}")

            train_models_together(models, [h[0] for h in halves], [h[2] for h in halves], training, device,
                                  [seed + i + 1 for i in range(count)], log)
            return [ReferenceModel(m, h[0], h[1]) for m, h in zip(models, halves, strict=True)]
    elif mode not in ("ensemble", "sequential"):
        raise ValueError(f"unknown reference training mode {mode!r}; known: ensemble, sequential")
    return [train_reference_model(pool, build_model, training, i, count, device, seed, progress)
            for i in range(count)]


# --- the paper's shadow-model attack ----------------------------------------------------------------------------
