"""Datasets as tensors with stable sample ids, and the disjoint roles each record plays.

Roles (docs/metrics.md): D (train) is what the deployed model learned from; val drives early stopping only;
test measures utility and supplies MIA non-members; the shadow pool belongs to the attacker alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iau_core.config import DataParams, Normalization
from iau_core.config.data import AUTO, MIN_ROLE_SIZE
from iau_core.sources import CanonicalDataError, read_canonical, read_forgotten


@dataclass(frozen=True)
class Split:
    """Inputs, labels and the stable ids of a set of records, aligned by position."""

    x: torch.Tensor  # (N, C, H, W) images in [0, 1] or (N, F) table features, float32, then normalized
    y: torch.Tensor  # (N,) int64
    ids: torch.Tensor  # (N,) int64 sample_id

    def __len__(self) -> int:
        return len(self.y)

    def take(self, positions: torch.Tensor | np.ndarray) -> Split:
        positions = torch.as_tensor(positions, dtype=torch.long)
        return Split(self.x[positions], self.y[positions], self.ids[positions])

    def partition(self, sample_ids: np.ndarray) -> tuple[Split, Split]:
        """(records whose id is in sample_ids, the rest): D_f and D_r from D."""
        inside = torch.from_numpy(np.isin(self.ids.numpy(), sample_ids))
        return self.take(inside.nonzero().squeeze(1)), self.take((~inside).nonzero().squeeze(1))

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device), self.ids.to(device))


@dataclass(frozen=True)
class DataBundle:
    train: Split
    val: Split
    test: Split
    shadow_pool: Split
    num_classes: int
    input_shape: tuple[int, ...]  # one record's: (C, H, W) for images, (F,) for tables; models are built from it
    roles_fingerprint: str = ""  # sha256 of which id plays which role, forgotten records included
    normalization: Normalization | None = None  # what was applied: the fixed numbers, or auto's statistics


def load_bundle(params: DataParams, root: str | Path | None = None) -> DataBundle:
    """Read the canonical dataset from disk and cut it into disjoint roles, reproducibly from split_seed."""
    root = Path(root or params.root)
    features, records = read_canonical(root, params.dataset.name)
    forgotten = read_forgotten(root, params.dataset.name)
    ever_ids, drawn = roles_ever_held(records, forgotten, params)  # drawn once: positions and fingerprint
    train_pos, val_pos, test_pos, shadow_pos = present_positions(records, ever_ids, drawn)
    normalize = params.dataset.normalize
    if normalize == AUTO:  # the shadow pool: outside D, and never shrunk by a deletion, so never refitted
        normalize = fitted_normalization(features[shadow_pos])
    x = as_inputs(features, normalize)
    y = torch.tensor(records["label"].to_numpy(np.int64))
    ids = torch.tensor(records["sample_id"].to_numpy(np.int64))
    everything = Split(x, y, ids)
    return DataBundle(
        train=everything.take(train_pos),
        val=everything.take(val_pos),
        test=everything.take(test_pos),
        shadow_pool=everything.take(shadow_pos),
        num_classes=int(y.max()) + 1,
        input_shape=tuple(x.shape[1:]),
        roles_fingerprint=roles_fingerprint(ever_ids, drawn),
        normalization=normalize,
    )


def fitted_normalization(features: np.ndarray) -> Normalization:
    """Mean and std per feature (per channel for images, after scaling to [0, 1]) of the given records. A feature
    that is constant there gets std 1, so it is centred, never divided by zero."""
    x = as_inputs(features, None).double()
    dims = [d for d in range(x.ndim) if d != 1]
    mean, std = x.mean(dim=dims), x.std(dim=dims)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return Normalization(mean=tuple(mean.tolist()), std=tuple(std.tolist()))


def as_inputs(features: np.ndarray, normalize: Normalization | None) -> torch.Tensor:
    """Model inputs from the canonical array: uint8 images scaled to [0, 1], table features as stored, then
    (x - mean) / std with one value for all, or one per channel (images) or per feature (tables)."""
    x = torch.from_numpy(features).float()
    if features.dtype == np.uint8:
        x = x.div_(255.0)
    if normalize is None:
        return x
    width = x.shape[1]  # channels or features
    if len(normalize.mean) not in (1, width):
        raise ValueError(f"data.dataset.normalize has {len(normalize.mean)} values; this dataset needs 1 or "
                         f"{width} (one per {'channel' if x.ndim == 4 else 'feature'})")
    shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast over the batch (and the pixels)
    mean, std = torch.tensor(normalize.mean).view(shape), torch.tensor(normalize.std).view(shape)
    return x.sub_(mean).div_(std)


def assign_roles(source: np.ndarray, ids: np.ndarray, params: DataParams) -> tuple[np.ndarray, ...]:
    """Positions for (train, val, test, shadow_pool), pairwise disjoint, over records in sample_id order.

    Counts: a permutation drawn by split_seed, cut at the sizes (exact sizes; the shipped datasets' roles). Test
    comes from the dataset's own test records when it has them (Fashion-MNIST), otherwise from the shuffled pool
    after the other roles (digits has no official test split). Shares: hash_roles.
    """
    if params.shares:
        return hash_roles(source, ids, params)
    rng = np.random.default_rng(params.split_seed)
    train_like = rng.permutation(np.flatnonzero(source == "train"))
    official_test = rng.permutation(np.flatnonzero(source == "test"))
    sizes = {"train_size": params.train_size, "val_size": params.val_size,
             "shadow_pool_size": params.shadow_pool_size}
    needed = sum(sizes.values()) + (0 if len(official_test) else params.test_size)
    if needed > len(train_like):
        raise ValueError(
            f"data sizes {sizes} (+ test_size {params.test_size} when the dataset has no test split) need "
            f"{needed} training records but {params.dataset.name!r} has {len(train_like)}; lower them in params.yaml")
    if len(official_test) and params.test_size > len(official_test):
        raise ValueError(f"data.test_size={params.test_size} but {params.dataset.name!r} has {len(official_test)} "
                         "test records")
    cuts = np.cumsum([params.train_size, params.val_size, params.shadow_pool_size])
    train, val, shadow, rest = np.split(train_like, cuts)
    test = official_test[: params.test_size] if len(official_test) else rest[: params.test_size]
    return train, val, test, shadow


def keyed_uniform(ids: np.ndarray, key: int) -> np.ndarray:
    """A number in [0, 1) per id from a keyed hash (BLAKE2b keyed by `key`) of that id alone: the same id and key
    give the same number on every machine, whatever other records exist or their order."""
    key_bytes = int(key).to_bytes(8, "little", signed=True)
    words = [int.from_bytes(hashlib.blake2b(int(i).to_bytes(8, "little", signed=True), digest_size=8,
                                            key=key_bytes).digest(), "little") for i in ids]
    return np.array(words, dtype=np.float64) / 2.0**64


def hash_roles(source: np.ndarray, ids: np.ndarray, params: DataParams) -> tuple[np.ndarray, ...]:
    """Roles from shares: each record's role is the band its keyed_uniform(id, split_seed) falls in: train
    [0, train), val, shadow pool, then test (records of the dataset's own test split, when it has one, by their
    own number below test_size). A record's role therefore depends on its id and split_seed only: re-sorting or
    appending rows never moves one, and role sizes are the shares give or take sampling noise. Each role must
    hold at least MIN_ROLE_SIZE records."""
    u = keyed_uniform(ids, params.split_seed)
    official = source == "test"
    cuts = np.cumsum([params.train_size, params.val_size, params.shadow_pool_size])
    band = np.searchsorted(cuts, u, side="right")  # 0 train, 1 val, 2 shadow, 3 the rest
    train_like = ~official
    train, val, shadow = (np.flatnonzero(train_like & (band == b)) for b in range(3))
    if official.any():
        test = np.flatnonzero(official & (u < params.test_size))
    else:
        test = np.flatnonzero(train_like & (u >= cuts[-1]) & (u < cuts[-1] + params.test_size))
    roles = {"train_size": train, "val_size": val, "test_size": test, "shadow_pool_size": shadow}
    small = {k: len(v) for k, v in roles.items() if len(v) < MIN_ROLE_SIZE}
    if small:
        shares = {k: getattr(params, k) for k in small}
        raise ValueError(", ".join(f"{k} {shares[k]:g} draws {n} records" for k, n in small.items()) +
                         f" of {params.dataset.name!r}: every role needs at least {MIN_ROLE_SIZE}; raise those "
                         "shares or add records")
    return train, val, test, shadow


def roles_fingerprint(ever_ids: np.ndarray, drawn: tuple[np.ndarray, ...]) -> str:
    """sha256 of which record plays which role, over every record the dataset ever held (roles_ever_held): a
    deletion leaves it unchanged, re-sorted rows leave it unchanged, and anything that moves a record between roles
    (new rows, other sizes or split_seed) changes it. Recorded with every model version, so a batch never unlearns
    a model with roles its data no longer has."""
    digest = hashlib.sha256()
    for positions in drawn:
        digest.update(np.sort(ever_ids[positions]).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def roles_ever_held(records: pd.DataFrame, forgotten: pd.DataFrame,
                    params: DataParams) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(every id the dataset ever held, in sample_id order; assign_roles' positions into it), present and
    tombstoned records together, so that a deletion moves no other record between roles."""
    present = records["sample_id"].to_numpy()
    both = np.intersect1d(present, forgotten["sample_id"].to_numpy())
    if both.size:
        raise CanonicalDataError(f"{params.dataset.name}: records {both[:10].tolist()} are both present and forgotten "
                                 "(a deletion was interrupted): run the deletion again to finish it")
    if not records["sample_id"].is_monotonic_increasing:  # read_canonical refuses this; a caller's own frame
        raise CanonicalDataError(f"{params.dataset.name}: records are not in sample_id order (materialize again)")
    everyone = pd.concat([records[["sample_id", "source"]], forgotten]).sort_values("sample_id")
    ever_ids = everyone["sample_id"].to_numpy(np.int64)
    return ever_ids, assign_roles(everyone["source"].to_numpy(), ever_ids, params)


def present_positions(records: pd.DataFrame, ever_ids: np.ndarray,
                      drawn: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Positions in ``records`` (sorted by id) of each role's records that are still present."""
    present = records["sample_id"].to_numpy()
    kept = [ever_ids[positions][np.isin(ever_ids[positions], present)] for positions in drawn]
    return tuple(np.searchsorted(present, ids) for ids in kept)  # present is sorted: id -> its row


def roles_after_forgetting(records: pd.DataFrame, forgotten: pd.DataFrame,
                           params: DataParams) -> tuple[np.ndarray, ...]:
    """Positions in ``records`` for (train, val, test, shadow_pool), drawn as if nothing had been forgotten.

    Deleting records must not move the others between roles: a val record sliding into D would change what the
    deployed model is measured against. So roles are drawn over every record the dataset ever held (present and
    tombstoned, in sample_id order, the order it was materialized in), then the forgotten ones are left out: D
    shrinks by exactly its forgotten records. With no tombstones this is ``assign_roles`` on the records as they
    are, so data versions from before any deletion (and every model trained on them) keep their roles.
    """
    ever_ids, drawn = roles_ever_held(records, forgotten, params)
    return present_positions(records, ever_ids, drawn)
