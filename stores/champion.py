"""The deployed model as the registry and its runs hold it: the champion's weights and tags (`load_champion`), and
D's summed loss gradient at its weights, stored on its run so a batch's IAU step needs a pass over D_f only.

Every champion version carries, on its MLflow run, what a deletion batch starts from: its weights, the data
version it excludes nothing beyond, the run holding the attacker's fitted reference statistics (the gate's
LiRA), and the summed gradient. Training one is the Prefect task tasks.champion.train_champion.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import torch
from mlflow.exceptions import MlflowException
from torch import nn

from iau_core.config import Params
from iau_core.data import Split
from iau_core.recipe import model_builder
from iau_core.selection import forget_set_sha256
from iau_core.sharding import checkpoints_of, members_of, with_checkpoints
from iau_core.unlearning.gradients import SummedGradient
from iau_core.unlearning.refresh import RefreshRecord, refresh_summed_gradient
from stores import registry, tracking
from stores.artifacts import load_checkpoints
from stores.project import RunContext

GRADIENT_FILE = "summed_gradient.pt"
ENSEMBLE_PREFIX = "members."  # iau_core.models.ShardEnsemble keeps its shard networks in `members`
log = logging.getLogger(__name__)


class ChampionUnusable(RuntimeError):
    """The champion's version exists but its weights cannot be loaded, or it does not match the data."""


@dataclass(frozen=True)
class Champion:
    version: registry.Version
    model: nn.Module
    data_version: str  # the data version it was trained or unlearned on
    attack_run_id: str  # the run holding the attacker's fitted reference statistics


def load_champion(ctx: RunContext, version: registry.Version | None = None) -> Champion:
    """The champion (or a given version) with its weights (a sharded one's SISA checkpoints attached), refusing
    clearly when they cannot be loaded or belong to another data version than ctx's.

    Its shard layout (S shards, R slices) is the registered model's own, read from its weights and its checkpoints,
    never from ctx's params: a champion trained with `iau train --set training.shards=4` is the 4-shard model it is
    whatever params.yaml says (champion_context gives a batch that layout)."""
    version = version or registry.champion(ctx.params.tracking.deployed_model)
    missing = [t for t in ("data_version", "reference_attack_run") if t not in version.tags]
    if missing:
        raise ChampionUnusable(f"{version.uri} lacks the tags {missing}: it was not made by `iau train` or a "
                               "nightly batch. Train a champion with `iau train`.")
    unreadable = (MlflowException, OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError)
    try:
        state = tracking.load_state_dict(version.run_id)
        checkpoints = load_checkpoints(version.run_id)  # None: a single model, or one trained before sharding
    except unreadable as exc:  # missing or unreadable weights or checkpoints
        raise unusable(version, exc) from None
    shards, slices = shards_in(state), checkpoints.slices if checkpoints is not None else 1
    model = model_builder(with_layout(ctx.params, shards, slices), ctx.bundle())(ctx.params.seed)
    try:
        if checkpoints is not None and len(checkpoints.shards) != shards:
            raise ValueError(f"its weights hold {shards} shard network(s), its SISA checkpoints "
                             f"{len(checkpoints.shards)}")
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:  # weights of another architecture (params.yaml's model section)
        raise unusable(version, exc) from None
    if version.tags["data_version"] != ctx.data_version:
        raise ChampionUnusable(f"the champion {version.uri} belongs to data version {version.tags['data_version']}, "
                               f"but data.dvc names {ctx.data_version}: retrain it on this data with `iau train`")
    if shards > 1 or slices > 1:
        # a sharded champion's SISA checkpoints, so the batch's `sisa` rung retrains only the shards it must
        if checkpoints is None:  # e.g. trained before sharding: `sisa` would retrain every shard, so no sisa rung
            log.warning("the sharded champion %s has no SISA checkpoints on run %s: no exact rung before retraining",
                        version.uri, version.run_id)
        with_checkpoints(model, checkpoints)
    return Champion(version, model.to(ctx.device).eval(), version.tags["data_version"],
                    version.tags["reference_attack_run"])


def unusable(version: registry.Version, exc: BaseException) -> ChampionUnusable:
    return ChampionUnusable(f"the champion {version.uri} cannot be loaded from run {version.run_id}: "
                            f"{(str(exc).splitlines() or [type(exc).__name__])[0]}. Nothing was changed; retrain "
                            "with `iau train`.")


def shards_in(state: dict[str, torch.Tensor]) -> int:
    """How many shard networks a model's weights hold: a ShardEnsemble's are members.<s>.<name>
    (iau_core.models), a single network's have no such prefix."""
    return len({key.split(".")[1] for key in state if key.startswith(ENSEMBLE_PREFIX)}) or 1


def layout_of(model: nn.Module) -> tuple[int, int]:
    """(S, R) of a loaded model: its shard networks, and its checkpoints' slices (1 without checkpoints)."""
    checkpoints = checkpoints_of(model)
    return len(members_of(model)), checkpoints.slices if checkpoints is not None else 1


def with_layout(params: Params, shards: int, slices: int) -> Params:
    return params.model_copy(update={"training": params.training.model_copy(update={"shards": shards,
                                                                                     "slices": slices})})


def champion_context(ctx: RunContext, champion: Champion) -> tuple[RunContext, str | None]:
    """ctx with the champion's shard layout in place of params.yaml's, and a line naming both when they differ
    (None when they agree).

    A batch unlearns the deployed model as it is. params.yaml's training.shards and training.slices say what the
    next `iau train` builds, not what serves: refusing over them would hold back erasure requests until someone
    edits a file, and following them would have the batch's `sisa` and retrain rungs rebuild another model than
    the deployed one. With the champion's layout a batch never changes the deployed architecture (`iau train`
    does), and the line says so in the batch's log."""
    shards, slices = layout_of(champion.model)
    training = ctx.params.training
    if (shards, slices) == (training.shards, training.slices):
        return ctx, None
    note = (f"the champion {champion.version.uri} has {shards} shard(s) x {slices} slice(s), params.yaml says "
            f"training.shards={training.shards}, training.slices={training.slices}: the batch unlearns the champion "
            "in its own layout (the next `iau train` uses params.yaml's)")
    return replace(ctx, params=with_layout(ctx.params, shards, slices)), note


def store_summed_gradient(run_id: str, model: nn.Module, train: Split, val: Split, ctx: RunContext,
                          previous: Champion | None = None, previous_train: Split | None = None) -> RefreshRecord:
    """D's summed gradient at the champion and its validation logits (gradients.SummedGradient), onto its run.

    With the champion it replaced (`previous`) and the D that one was on (`previous_train`: the new D plus the
    batch's records), the cache is refreshed from the previous one by nightly.gradient_refresh (a sample of D
    instead of all of it, unlearning.refresh); else, or when the refresh's checks say so, one pass over all of D.
    Returns what the refresh did, also set as tags on the run."""
    settings = ctx.params.nightly.gradient_refresh
    train, val = train.to(ctx.device), val.to(ctx.device)
    old_cache, old_model, forget = None, model, train.take(torch.arange(0))
    if previous is not None and previous_train is not None:
        forget = previous_train.to("cpu").partition(train.ids.cpu().numpy())[1].to(ctx.device)  # the records it forgot
        old_model = previous.model.to(ctx.device)
        if settings.mode != "exact":  # the exact pass needs no download
            old_cache = cached_summed_gradient(previous, previous_train, ctx.device)
    cache, record = refresh_summed_gradient(old_cache, old_model, model.to(ctx.device), forget, train, val, settings,
                                            ctx.params.unlearning.batch_size, seed=ctx.params.seed + len(train))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / GRADIENT_FILE
        torch.save({"grads": [g.cpu() for g in cache.grads], "count": cache.count,
                    "ids_sha256": cache.ids_sha256, "val_logits": cache.val_logits.cpu(),
                    "val_ids_sha256": cache.val_ids_sha256, "batches_since_exact": cache.batches_since_exact,
                    "drift": cache.drift}, path)
        tracking.MlflowClient().log_artifact(run_id, str(path))
    tracking.set_tags(run_id, record.as_params())
    log.info("summed gradient over D refreshed: %s (%s) in %.2f s", record.mode, record.reason, record.seconds)
    return record


def cached_summed_gradient(champion: Champion, train: Split, device: torch.device) -> SummedGradient | None:
    """The champion's stored gradient over D, if it is there, readable and was computed over exactly this D and
    these weights' shapes; else None, and the caller computes it afresh. The cache is only an optimisation: a
    damaged one (truncated, not a tensor file, wrong shapes) is logged as a warning, never an error that stops
    every batch until someone restores it."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=champion.version.run_id, artifact_path=GRADIENT_FILE,
                                                       dst_path=tmp)
        except (MlflowException, OSError):
            return None  # not stored (e.g. a champion whose cache step was killed): nothing to warn about
        try:
            stored = torch.load(path, weights_only=True, map_location="cpu")
            grads, count, ids_sha256 = list(stored["grads"]), int(stored["count"]), str(stored["ids_sha256"])
            val_logits, val_ids_sha256 = stored.get("val_logits"), stored.get("val_ids_sha256")  # older: absent
            since_exact, drift = int(stored.get("batches_since_exact", 0)), float(stored.get("drift", 0.0))
            if val_logits is not None and not isinstance(val_logits, torch.Tensor):
                raise ValueError(f"val_logits is a {type(val_logits).__name__}, not a tensor")
            shapes = [tuple(p.shape) for p in champion.model.parameters()]
            if [tuple(g.shape) for g in grads] != shapes:
                raise ValueError(f"{len(grads)} tensors that do not match the model's {len(shapes)} parameters")
        except Exception as exc:  # truncated zip (RuntimeError), pickle errors, missing keys, wrong types...
            log.warning("the stored gradient %s on run %s is damaged and ignored (computed afresh instead): %s: %s",
                        GRADIENT_FILE, champion.version.run_id, type(exc).__name__,
                        (str(exc).splitlines() or [""])[0][:200])
            return None
    if ids_sha256 != forget_set_sha256(train.ids.cpu().numpy()) or count != len(train):
        return None
    return SummedGradient([g.to(device) for g in grads], count, ids_sha256, val_logits,
                          None if val_ids_sha256 is None else str(val_ids_sha256), since_exact, drift)
