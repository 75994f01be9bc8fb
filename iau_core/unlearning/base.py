"""What every unlearning method receives, what it returns, how its time is measured, and the one result type
every caller (the recipe loop, the flow's tasks, the nightly batch) passes on."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from iau_core.config import TrainingParams, UnlearningParams
from iau_core.data import Split
from iau_core.metrics import Scores
from iau_core.training import Progress, synchronize
from iau_core.unlearning.gradients import SummedGradient

if TYPE_CHECKING:
    from iau_core.sharding import ShardCheckpoints

Choices = dict[str, str | float | int]


@dataclass(frozen=True)
class UnlearningTask:
    """The deployed model and the data a method may touch, already on `device`.

    `model` is the original; a method returns a new model and must leave this one unchanged. `val` is for early
    stopping and for choosing a method's step per run: never the test set.
    """

    model: nn.Module
    retain: Split  # D_r
    forget: Split  # D_f
    val: Split
    build_model: Callable[[int], nn.Module]  # a fresh initialisation of the same architecture from a seed
    training: TrainingParams
    unlearning: UnlearningParams
    device: torch.device
    seed: int
    progress: Progress | None = None
    # D's summed loss gradient at `model`, when the caller holds it (a nightly batch): methods that need the
    # retained set's gradient may use it instead of a pass over D_r (gradients.SummedGradient)
    summed_gradient: SummedGradient | None = None
    # Called with (epoch, model) after each epoch an iterative method keeps: a study scores every epoch of one run
    # (studies/frontier.py) instead of rerunning the method once per epoch count. It must leave the model as it is.
    observe: Callable[[int, nn.Module], None] | None = None
    # The sharded (SISA) model's checkpoints, when `model` was trained by iau_core.sharding and the caller holds
    # them: `sisa` retrains only the shards a deletion touches from them (without them it retrains every shard)
    shards: ShardCheckpoints | None = None

    def copy_model(self) -> nn.Module:
        return copy.deepcopy(self.model)


@dataclass(frozen=True)
class Unlearned:
    """A method's model and what it decided on the way (hyperparameters, a chosen step and why): recorded as
    the method's MLflow params, so a reader sees how each number was produced."""

    model: nn.Module
    choices: Choices = field(default_factory=dict)


MethodFn = Callable[[UnlearningTask], Unlearned]


@dataclass(frozen=True)
class MethodResult:
    """One method's run on one seed, as every caller passes it on: its time and choices, and, where the caller
    has them, the model (dropped once recorded), the scores and the MLflow run that records it."""

    method: str
    seed: int
    seconds: float
    choices: Choices
    model: nn.Module | None = None
    scores: Scores | None = None
    run_id: str | None = None


def timed(method: str, fn: MethodFn, task: UnlearningTask) -> MethodResult:
    """Wall time of the method alone, including any per-run choice of its hyperparameters: inputs are already
    on the device, and the clock stops only once the device has finished updating the parameters
    (docs/metrics.md, unlearn_seconds)."""
    synchronize(task.device)
    start = time.perf_counter()
    result = fn(task)
    synchronize(task.device)
    return MethodResult(method, task.seed, time.perf_counter() - start, result.choices, result.model)
