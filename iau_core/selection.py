"""Forget-set strategies: which records of D the deletion request covers. Each returns sorted sample ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import IsolationForest

from iau_core.config import SelectionParams
from iau_core.data import Split


def select_random(train: Split, params: SelectionParams, seed: int) -> np.ndarray:
    """A uniform sample of round(fraction * |D|) records (at least one)."""
    rng = np.random.default_rng(seed)
    k = max(1, round(params.fraction * len(train)))
    return np.sort(rng.choice(train.ids.numpy(), size=k, replace=False))


def select_outliers(train: Split, params: SelectionParams, seed: int) -> np.ndarray:
    """Records an IsolationForest on raw pixels flags as anomalous (paper Table V: outlier removal)."""
    features = train.x.reshape(len(train), -1).numpy()
    forest = IsolationForest(contamination=params.contamination, random_state=seed, n_jobs=1)
    flagged = forest.fit_predict(features) == -1
    return np.sort(train.ids.numpy()[flagged])


STRATEGIES: dict[str, Callable[[Split, SelectionParams, int], np.ndarray]] = {
    "random": select_random,
    "outliers": select_outliers,
}


def select_forget_set(train: Split, params: SelectionParams, seed: int) -> np.ndarray:
    """Sorted sample ids of D_f (the seed of the repeat draws the random set and seeds the forest); refuses an
    empty forget set or one that would leave nothing to retain."""
    if params.strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {params.strategy!r}; known: {sorted(STRATEGIES)}")
    ids = STRATEGIES[params.strategy](train, params, seed)
    if len(ids) == 0 or len(ids) >= len(train):
        raise ValueError(f"selection {params.strategy!r} chose {len(ids)} of {len(train)} records; "
                         "a forget set must be non-empty and leave records to retain")
    return ids


def forget_set_sha256(ids: np.ndarray) -> str:
    """Fingerprint of a forget set, independent of order: sha256 of the sorted ids, one per line."""
    text = "\n".join(str(int(i)) for i in np.sort(ids))
    return hashlib.sha256(text.encode()).hexdigest()
