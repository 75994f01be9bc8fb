"""What every unlearning method receives and how its time is measured."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from iau_core.config import TrainingParams, UnlearningParams
from iau_core.data import Split
from iau_core.training import synchronize


@dataclass(frozen=True)
class UnlearningTask:
    """The deployed model and the data a method may touch, already on `device`.

    `model` is the original; a method returns a new model and must leave this one unchanged.
    """

    model: nn.Module
    retain: Split  # D_r
    forget: Split  # D_f
    val: Split  # early stopping, for methods that train
    build_model: Callable[[], nn.Module]  # a fresh, seeded initialisation of the same architecture
    training: TrainingParams
    unlearning: UnlearningParams
    device: torch.device
    seed: int

    def copy_model(self) -> nn.Module:
        return copy.deepcopy(self.model)


MethodFn = Callable[[UnlearningTask], nn.Module]


@dataclass(frozen=True)
class MethodRun:
    model: nn.Module
    seconds: float


def timed(method: MethodFn, task: UnlearningTask) -> MethodRun:
    """Wall time of the method alone: inputs are already on the device, and the clock stops only once the
    device has finished updating the parameters (METRICS.md, unlearn_seconds)."""
    synchronize(task.device)
    start = time.perf_counter()
    model = method(task)
    synchronize(task.device)
    return MethodRun(model, time.perf_counter() - start)
