"""Artifacts read back from MLflow runs, each downloaded once per process: the base models' state_dicts and the
attacker's fitted attacks (the shadow attack's weights, LiRA's and RMIA's reference statistics).

The unlearn flow needs the same base model and attacks in every method's task, for every seed; without this
cache each of them downloaded the same three artifacts again (~45 times per seed).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache

import mlflow
import numpy as np
import torch
from torch import nn

from iau_core.attacks import ATTACK_NAMES, Attacks, restore_attack
from iau_core.recipe import attack_setup, model_builder
from stores import tracking
from stores.project import RunContext

LIRA_FILE = "lira_reference_stats.npz"


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
    """A fresh model with the run's weights: load_state_dict copies them, so methods never share a module."""
    model = model_builder(ctx.params, ctx.bundle())(ctx.params.seed)
    model.load_state_dict(_state_dict(ref.run_id))
    return model


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
