"""SISA training (Bourtoule et al., S&P 2021, arXiv 1912.03817): exact deletion by design.

D is split into `training.shards` (S) disjoint shards, each cut into `training.slices` (R) slices, both drawn from
each record's id by a keyed hash (as roles are, iau_core.data.keyed_uniform), so adding or deleting records never
moves another one. Each shard's network trains with the same recipe (train_model: GR, early stopping) slice after
slice, slice k on slices 1..k (SISA's incremental scheme), and its weights are kept after each slice: the
checkpoints. The deployed model averages the shard networks' probabilities (models.ShardEnsemble).

A deletion retrains only the shards that held a deleted record, from the checkpoint before the first slice that
held one, on the retained records (unlearning/sisa.py): since each stage's training is a deterministic function of
its starting weights, its records and its seed, the result is the model training from scratch on the retained
records would give, and it never saw the deleted ones. Which slices changed is read from a digest of each slice's
record ids kept with the checkpoints, so records forgotten by earlier approximate batches count as changed too.

S = 1, R = 1 is today's single model trained by train_model, bit for bit (tests/test_sharding.py).
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from iau_core.config import TrainingParams
from iau_core.data import Split, keyed_uniform
from iau_core.models import ShardEnsemble, shard_seed
from iau_core.training import Progress, TrainReport, accuracy, train_model

# Keys of the two keyed hashes: fixed, so a record's shard and slice depend on its id alone (not on the seed or on
# the other records). Different keys make the slice independent of the shard.
SHARD_KEY = 0x5349_5341  # "SISA"
SLICE_KEY = SHARD_KEY + 1

StateDict = dict[str, torch.Tensor]


def assign(ids: np.ndarray, shards: int, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """(shard, slice) of each record id, 0-based. S = R = 1 needs no hashing: every record in shard 0, slice 0."""
    ids = np.asarray(ids, dtype=np.int64)
    zeros = np.zeros(len(ids), dtype=np.int64)
    shard = zeros if shards == 1 else np.minimum(keyed_uniform(ids, SHARD_KEY) * shards, shards - 1).astype(np.int64)
    part = zeros if slices == 1 else np.minimum(keyed_uniform(ids, SLICE_KEY) * slices, slices - 1).astype(np.int64)
    return shard, part


def slice_positions(ids: np.ndarray | torch.Tensor, shards: int, slices: int) -> list[list[np.ndarray]]:
    """[shard][slice] -> ascending positions in `ids` of that slice's records."""
    ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    shard, part = assign(ids, shards, slices)
    return [[np.flatnonzero((shard == s) & (part == k)) for k in range(slices)] for s in range(shards)]


def ids_digest(ids: np.ndarray | torch.Tensor) -> str:
    """sha256 of a set of record ids (order-free): what a checkpoint records about the records it was trained on,
    without the ids themselves."""
    ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    return hashlib.sha256(np.sort(ids.astype(np.int64)).tobytes()).hexdigest()


@dataclass
class ShardHistory:
    """One shard's checkpoints: its initial weights, its weights after each slice, and which records each slice
    held (ids_digest), plus the cost of each slice's training (epochs and seconds)."""

    initial: StateDict
    after_slice: list[StateDict]
    digests: list[str]
    epochs: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def before(self, slice_index: int) -> StateDict:
        """The weights slice `slice_index` starts from."""
        return self.initial if slice_index == 0 else self.after_slice[slice_index - 1]


@dataclass
class ShardCheckpoints:
    """Every shard's history, and the seed they were trained from (a retraining must reuse it to be exact)."""

    seed: int
    slices: int
    shards: list[ShardHistory]

    def payload(self, shard: int) -> dict:
        """One shard's checkpoints as tensors, strings and numbers only: torch.save it, torch.load it with
        weights_only=True (checkpoints_from_payloads)."""
        return shard_payload(self.seed, self.slices, shard, self.shards[shard])

    def __deepcopy__(self, memo: dict) -> ShardCheckpoints:
        # Never changed in place (a retraining makes new histories), so the copies of a model a method makes
        # share them rather than copying S x (R + 1) state dicts each time.
        return self


def shard_payload(seed: int, slices: int, shard: int, history: ShardHistory) -> dict:
    return {"seed": seed, "slices": slices, "shard": shard, "initial": history.initial,
            "after_slice": history.after_slice, "digests": history.digests, "epochs": history.epochs,
            "seconds": history.seconds}


def checkpoints_from_payloads(payloads: Sequence[dict]) -> ShardCheckpoints:
    """The inverse of ShardCheckpoints.payload over every shard, in any order."""
    ordered = sorted(payloads, key=lambda p: int(p["shard"]))
    if [int(p["shard"]) for p in ordered] != list(range(len(ordered))):
        raise ValueError(f"shard checkpoints {[int(p['shard']) for p in ordered]} are not shards 0..{len(ordered) - 1}")
    histories = [ShardHistory(dict(p["initial"]), [dict(s) for s in p["after_slice"]], list(p["digests"]),
                              [int(e) for e in p["epochs"]], [float(s) for s in p["seconds"]]) for p in ordered]
    return ShardCheckpoints(int(ordered[0]["seed"]), int(ordered[0]["slices"]), histories)


def members_of(model: nn.Module) -> list[nn.Module]:
    """The shard networks of a model: an ensemble's members, or the model itself (S = 1)."""
    return list(model.members) if isinstance(model, ShardEnsemble) else [model]


# The checkpoints travel with the model they produced, as a plain attribute (not in its state_dict): the recipe
# passes them to `sisa`, the flows store them on the model's run (stores/artifacts.py).
CHECKPOINTS_ATTRIBUTE = "shard_checkpoints"


def checkpoints_of(model: nn.Module) -> ShardCheckpoints | None:
    return getattr(model, CHECKPOINTS_ATTRIBUTE, None)


def with_checkpoints(model: nn.Module, checkpoints: ShardCheckpoints | None) -> nn.Module:
    setattr(model, CHECKPOINTS_ATTRIBUTE, checkpoints)
    return model


def cpu_state(model: nn.Module) -> StateDict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def slice_seed(seed: int, shard: int, slice_index: int) -> int:
    """The shuffling seed of one slice's training: the run's seed for shard 0, slice 0 (S = R = 1: today's)."""
    return shard_seed(seed, shard) + slice_index


def train_shard(member: nn.Module, train: Split, slices: Sequence[np.ndarray], val: Split, params: TrainingParams,
                device: torch.device, seed: int, shard: int, start: int = 0, prior: ShardHistory | None = None,
                progress: Progress | None = None) -> ShardHistory:
    """Train one shard's network in place from slice `start` on: slice k on the records of slices 0..k (positions
    into `train`, ascending), with the recipe and slice_seed. `member` holds the weights slice `start` starts from
    (its initial weights when start = 0); `prior`'s checkpoints before `start` are kept as they are."""
    if start > 0 and prior is None:
        raise ValueError("training a shard from a later slice needs the checkpoints before it")
    history = ShardHistory(prior.initial if prior and start else cpu_state(member),
                           list(prior.after_slice[:start]) if prior else [],
                           list(prior.digests[:start]) if prior else [],
                           list(prior.epochs[:start]) if prior else [], list(prior.seconds[:start]) if prior else [])
    for k in range(start, len(slices)):
        seen = np.sort(np.concatenate(slices[: k + 1]))
        if len(seen) == 0:  # an empty shard so far (tiny data): its weights stay as they are
            report = TrainReport(0, 0, float("nan"), 0.0, False)
        else:
            report = train_model(member, train.take(seen), val, params, device, slice_seed(seed, shard, k),
                                 progress)
        history.after_slice.append(cpu_state(member))
        history.digests.append(ids_digest(train.ids[torch.as_tensor(slices[k], dtype=torch.long)]))
        history.epochs.append(report.epochs_run)
        history.seconds.append(report.seconds)
    return history


def train_sharded(initial: nn.Module, train: Split, val: Split, params: TrainingParams, device: torch.device,
                  seed: int, progress: Progress | None = None) -> tuple[nn.Module, TrainReport]:
    """Train a fresh model (model_builder's: one network, or an ensemble with params.shards members) on `train`,
    shard after shard in this process, and return it with its checkpoints attached (checkpoints_of). With
    S = R = 1 this is exactly train_model(initial, train, ...). The flows train the shards as parallel tasks
    instead (tasks/training.py) and assemble them the same way."""
    start = time.perf_counter()
    members = members_of(initial)
    if len(members) != params.shards:
        raise ValueError(f"the model has {len(members)} shard networks, training.shards is {params.shards}")
    positions = slice_positions(train.ids, params.shards, params.slices)
    histories = []
    for s, member in enumerate(members):
        say = (lambda line, s=s: progress(f"shard {s}: {line}")) if progress and params.shards > 1 else progress
        histories.append(train_shard(member.to(device), train, positions[s], val, params, device, seed, s,
                                     progress=say))
    model = assemble(initial, ShardCheckpoints(seed, params.slices, histories))
    return model, sharded_report(model, histories, params, val, device, time.perf_counter() - start)


def assemble(template: nn.Module, checkpoints: ShardCheckpoints) -> nn.Module:
    """A model of `template`'s architecture holding each shard's weights after its last slice, checkpoints
    attached. The template's own weights are not used (nor changed)."""
    members = members_of(template)
    if len(members) != len(checkpoints.shards):
        raise ValueError(f"{len(checkpoints.shards)} shards' checkpoints for {len(members)} shard networks")
    for member, history in zip(members, checkpoints.shards, strict=True):
        member.load_state_dict(history.after_slice[-1])
    return with_checkpoints(template, checkpoints)


def sharded_report(model: nn.Module, histories: Sequence[ShardHistory], params: TrainingParams, val: Split,
                   device: torch.device, seconds: float) -> TrainReport:
    """One TrainReport for the whole model: epochs summed over shards and slices (its compute, in epochs of a
    shard-slice), the deployed model's validation accuracy, the wall time."""
    epochs = sum(sum(h.epochs) for h in histories)
    stopped = any(0 < e < params.max_epochs for h in histories for e in h.epochs)  # any slice stopped early
    return TrainReport(epochs, epochs, accuracy(model, val, device), seconds, stopped)


def train_fresh(initial: nn.Module, train: Split, val: Split, params: TrainingParams, device: torch.device,
                seed: int, progress: Progress | None = None) -> tuple[nn.Module, TrainReport]:
    """The recipe's training of a fresh model, whatever its layout: train_model itself for S = R = 1 (the model
    returned is `initial`, trained in place), sharded training otherwise. What retraining from scratch uses."""
    if params.shards == 1 and params.slices == 1:
        initial.to(device)
        return initial, train_model(initial, train, val, params, device, seed, progress)
    return train_sharded(initial, train, val, params, device, seed, progress)


def affected_from(history: ShardHistory, retained: Split, positions: Sequence[np.ndarray]) -> int | None:
    """The first slice of a shard whose records differ from those its checkpoint was trained on (a record
    deleted, or one added), or None when none does: the slice a deletion retrains from."""
    for k, where in enumerate(positions):
        if ids_digest(retained.ids[torch.as_tensor(where, dtype=torch.long)]) != history.digests[k]:
            return k
    return None


def copy_member(template: nn.Module, weights: StateDict, device: torch.device) -> nn.Module:
    member = copy.deepcopy(template)
    member.load_state_dict(weights)
    return member.to(device)
