"""Artifacts read back from MLflow runs, each downloaded once per process: the base models' state_dicts and the
attacker's fitted attacks (the shadow attack's weights, LiRA's and RMIA's reference statistics); and a sharded
model's SISA checkpoints (iau_core/sharding.py), written and read here: one file per shard under CHECKPOINTS_DIR.

The unlearn flow needs the same base model and attacks in every method's task, for every seed; without this
cache each of them downloaded the same three artifacts again (~45 times per seed).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from torch import nn

from iau_core.attacks import ATTACK_NAMES, Attacks, restore_attack
from iau_core.recipe import attack_setup, model_builder
from iau_core.sharding import ShardCheckpoints, checkpoints_from_payloads, with_checkpoints
from stores import tracking
from stores.project import RunContext

LIRA_FILE = "lira_reference_stats.npz"
# A sharded model's checkpoints (per shard: the initial weights and the weights after each slice) on its run:
# weights trained on the run's data version, purged with the run's other weights (stores/model_purge.py).
CHECKPOINTS_DIR = "shard_checkpoints"


def attack_file(name: str) -> str:
    """Where the reference-attack run keeps the attack `name`'s arrays (lira's is LIRA_FILE)."""
    return f"{name}_reference_stats.npz"


# How the reference-attack run stores each attack: the shadow attack's MLP as the run's state_dict (its artifact
# since before the registry), attacks that learn nothing not at all, every other one as attack_file(name).
STATELESS = ("loss",)
# Enough for one seed's base models (deployed, the other recipes, no-GR) and the attacks; older seeds drop out.
CACHED_RUNS = 8


@dataclass(frozen=True)
class ModelRef:
    run_id: str
    uri: str


# Keyed by run id (and artifact path): valid because a run's artifacts never change once it is FINISHED, and
# only FINISHED runs are read through here (a base model's or the reference attack's run, found or just closed).
# A run still RUNNING (a deletion batch's) must not be read through this cache.
@lru_cache(maxsize=CACHED_RUNS)
def _state_dict(run_id: str) -> dict[str, torch.Tensor]:
    return tracking.load_state_dict(run_id)


@lru_cache(maxsize=4 * CACHED_RUNS)
def _attack_arrays(run_id: str, artifact_path: str) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=tmp)
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}


def load_base_model(ctx: RunContext, ref: ModelRef) -> nn.Module:
    """A fresh model with the run's weights: load_state_dict copies them, so methods never share a module. A
    sharded model comes with its checkpoints (sharding.checkpoints_of), for `sisa`."""
    model = model_builder(ctx.params, ctx.bundle())(ctx.params.seed)
    model.load_state_dict(_state_dict(ref.run_id))
    if ctx.params.training.shards > 1 or ctx.params.training.slices > 1:
        with_checkpoints(model, _checkpoints(ref.run_id))
    return model


def log_checkpoints(run_id: str, checkpoints: ShardCheckpoints | None) -> None:
    """A sharded model's checkpoints onto its run: CHECKPOINTS_DIR/shard<s>.pt, each loadable with weights_only."""
    if checkpoints is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for shard in range(len(checkpoints.shards)):
            path = f"{tmp}/shard{shard}.pt"
            torch.save(checkpoints.payload(shard), path)
        mlflow.MlflowClient().log_artifacts(run_id, tmp, CHECKPOINTS_DIR)


def load_checkpoints(run_id: str) -> ShardCheckpoints | None:
    """The checkpoints a run stored (log_checkpoints), or None when it has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CHECKPOINTS_DIR, dst_path=tmp)
        except (MlflowException, OSError):
            return None
        files = sorted(Path(folder).glob("shard*.pt"))
        if not files:
            return None
        return checkpoints_from_payloads([torch.load(f, weights_only=True, map_location="cpu") for f in files])


@lru_cache(maxsize=2)
def _checkpoints(run_id: str) -> ShardCheckpoints | None:
    return load_checkpoints(run_id)


def load_attacks(ctx: RunContext, run_id: str) -> Attacks:
    """Fresh attacks over the cached statistics (each attack's restore copies them: no caller alters the cache).
    The shadow attack's weights are the run's state_dict; an attack that stores nothing is rebuilt as it is."""
    setup = attack_setup(ctx.params, ctx.bundle(), ctx.device)
    attacks = Attacks()
    for name in ATTACK_NAMES:
        if name == "shadow":
            arrays = {k: v.numpy() for k, v in _state_dict(run_id).items()}
        elif name in STATELESS:
            arrays = {}
        else:
            arrays = _attack_arrays(run_id, attack_file(name))
        attacks[name] = restore_attack(name, arrays, setup)
    return attacks


def clear() -> None:
    """Forget every cached artifact (tests that rebuild a store under the same process)."""
    _state_dict.cache_clear()
    _attack_arrays.cache_clear()
    _checkpoints.cache_clear()
