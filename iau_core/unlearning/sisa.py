"""SISA's exact deletion (Bourtoule et al., S&P 2021): on a sharded model (iau_core/sharding.py), retrain only the
shards whose records changed, each from its checkpoint before the first changed slice, on the retained records.

Exact by construction: every shard network of the result was trained from its initial weights on retained records
only (the checkpoints it restarts from were trained on slices that held no deleted record), with the original's
seeds, so it is the model training from scratch on D_r would give. The deployed model's current weights are not
read: records an earlier approximate batch removed are still in the checkpoints' slices, their digests differ from
D_r's, and those slices are retrained too. The checkpoints come in the task (UnlearningTask.shards) or attached to the
model (sharding.checkpoints_of). Without them (a model trained elsewhere, or S = R = 1) every shard is retrained
from scratch: on a single model this is `retrain`.

Its choices say `exact: True` and which shards and how many slices it retrained; they reach the batch's gates.json
and audit (iau_core.deletion.Attempt) and the comparison's MLflow params.
"""

from __future__ import annotations

from iau_core.sharding import (
    ShardCheckpoints,
    affected_from,
    assemble,
    checkpoints_of,
    copy_member,
    members_of,
    slice_positions,
    train_fresh,
    train_shard,
)
from iau_core.unlearning.base import Unlearned, UnlearningTask


def sisa(task: UnlearningTask) -> Unlearned:
    checkpoints = task.shards or checkpoints_of(task.model)
    templates = members_of(task.model)
    if checkpoints is None or len(checkpoints.shards) != len(templates):
        return from_scratch(task)
    shards, slices = len(checkpoints.shards), checkpoints.slices
    positions = slice_positions(task.retain.ids, shards, slices)
    histories, retrained, slices_retrained = [], [], 0
    for s, (history, template) in enumerate(zip(checkpoints.shards, templates, strict=True)):
        first = affected_from(history, task.retain, positions[s])
        if first is None:  # none of its records changed: its checkpoints and weights stay as they are
            histories.append(history)
            continue
        member = copy_member(template, history.before(first), task.device)
        say = (lambda line, s=s: task.progress(f"shard {s}: {line}")) if task.progress else None
        histories.append(train_shard(member, task.retain, positions[s], task.val, task.training, task.device,
                                     checkpoints.seed, s, start=first, prior=history, progress=say))
        retrained.append(s)
        slices_retrained += slices - first
    model = assemble(task.copy_model(), ShardCheckpoints(checkpoints.seed, slices, histories))
    return Unlearned(model.to(task.device), choices(checkpoints.seed, shards, slices, retrained, slices_retrained))


def from_scratch(task: UnlearningTask) -> Unlearned:
    """Every shard (or the single model) trained from scratch on D_r with the original's seed: `retrain`."""
    model, _ = train_fresh(task.build_model(task.seed).to(task.device), task.retain, task.val, task.training,
                           task.device, task.seed, task.progress)
    shards, slices = task.training.shards, task.training.slices
    return Unlearned(model, choices(task.seed, shards, slices, list(range(shards)), shards * slices))


def choices(seed: int, shards: int, slices: int, retrained: list[int], slices_retrained: int) -> dict:
    return {"exact": True, "seed": seed, "shards": shards, "slices": slices,
            "shards_retrained": len(retrained), "slices_retrained": slices_retrained,
            "retrained_shards": ",".join(map(str, retrained)) or "none"}

