"""The recipe's steps at the level a flow composes them: each takes plain inputs and returns results,
so Prefect tasks (tasks/) and the bare command line (python -m iau_core) run the same science."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from iau_core.config import Params
from iau_core.data import DataBundle
from iau_core.metrics import EvalSets, make_eval_sets, score_model
from iau_core.models import build_model
from iau_core.privacy import ShadowAttack, ShadowReport, train_shadow_attack
from iau_core.training import TrainReport, train_model
from iau_core.unlearning import UnlearningTask, get_method, timed


def model_builder(params: Params, bundle: DataBundle) -> Callable[[int], nn.Module]:
    """A factory of freshly initialised models; the seed fixes the initial weights."""

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(params.model.name, bundle.in_channels, bundle.num_classes, bundle.image_size)

    return build


def train_original(params: Params, bundle: DataBundle, device: torch.device) -> tuple[nn.Module, TrainReport]:
    """The deployed model: trained on all of D with the GR loss."""
    model = model_builder(params, bundle)(params.seed).to(device)
    report = train_model(model, bundle.train, bundle.val, params.training, device, params.seed)
    return model, report


def train_attack(params: Params, bundle: DataBundle, device: torch.device) -> tuple[ShadowAttack, ShadowReport]:
    """Shadow models and attack, from the shadow pool only: the attacker never sees D, val or test."""
    return train_shadow_attack(bundle.shadow_pool, model_builder(params, bundle), params.training, params.mia,
                               bundle.num_classes, device, params.seed)


def attack_strength(attack: ShadowAttack, model: nn.Module, bundle: DataBundle, device: torch.device,
                    seed: int) -> float:
    """Balanced accuracy (%) of the attack on the original: equal-size samples of D (members) and test."""
    gen = torch.Generator().manual_seed(seed)
    k = min(len(bundle.train), len(bundle.test))
    members = bundle.train.take(torch.randperm(len(bundle.train), generator=gen)[:k])
    nonmembers = bundle.test.take(torch.randperm(len(bundle.test), generator=gen)[:k])
    return attack.balanced_accuracy(model, members, nonmembers, device)


@dataclass(frozen=True)
class MethodOutcome:
    model: nn.Module
    seconds: float
    scores: dict[str, float]


def unlearn_and_score(method: str, original: nn.Module, forget_ids: np.ndarray, params: Params,
                      bundle: DataBundle, attack: ShadowAttack, device: torch.device) -> MethodOutcome:
    """Run one method on (D_r, D_f) with inputs already on the device, then score what it returns."""
    forget, retain = bundle.train.partition(forget_ids)
    task = UnlearningTask(
        model=original.to(device), retain=retain.to(device), forget=forget.to(device), val=bundle.val.to(device),
        build_model=lambda: model_builder(params, bundle)(params.seed), training=params.training,
        unlearning=params.unlearning, device=device, seed=params.seed,
    )
    run = timed(get_method(method), task)
    sets: EvalSets = make_eval_sets(retain, forget, bundle.test, params.seed)
    return MethodOutcome(run.model, run.seconds, score_model(run.model, sets, attack, device))


def methods_to_run(params: Params) -> list[str]:
    """References first (the gold model and do-nothing), then the compared methods of params.yaml."""
    return ["original", "retrain", *params.unlearning.methods]
