"""Forget-set strategies: which records of D the deletion request covers. Each returns sorted sample ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import IsolationForest

from iau_core.config import STRATEGY_NAMES, SelectionParams
from iau_core.data import Split
from iau_core.ids import read_ids_file


def select_random(train: Split, params: SelectionParams, seed: int) -> np.ndarray:
    """A uniform sample of round(fraction * |D|) records (at least one)."""
    rng = np.random.default_rng(seed)
    k = max(1, round(params.fraction * len(train)))
    return np.sort(rng.choice(train.ids.numpy(), size=k, replace=False))


def select_outliers(train: Split, params: SelectionParams, seed: int) -> np.ndarray:
    """Records an IsolationForest on the inputs (pixels or table features) flags as anomalous (paper Table V:
    outlier removal)."""
    features = train.x.reshape(len(train), -1).numpy()
    forest = IsolationForest(contamination=params.contamination, random_state=seed, n_jobs=1)
    flagged = forest.fit_predict(features) == -1
    return np.sort(train.ids.numpy()[flagged])


def select_class(train: Split, params: SelectionParams, seed: int) -> np.ndarray:
    """Every record of D with one label (class-wise forgetting); the seed plays no part."""
    present = sorted(set(train.y.tolist()))
    if params.label not in present:
        raise ValueError(f"selection.label {params.label} has no record in D; D's labels are {present}")
    return np.sort(train.ids.numpy()[train.y.numpy() == params.label])


def select_ids(train: Split, params: SelectionParams, seed: int) -> np.ndarray:
    """Exactly the sample ids a request names (selection.ids, or a file of them). An id that is not in D is
    refused, never skipped: a deletion that silently forgets less than asked is worse than one that stops."""
    requested = np.asarray(params.ids if params.ids is not None else read_ids_file(params.ids_file),
                           dtype=np.int64)
    values, counts = np.unique(requested, return_counts=True)
    repeated = values[counts > 1]
    if len(repeated):
        raise ValueError(f"selection ids are listed more than once: {repeated[:10].tolist()}")
    unknown = requested[~np.isin(requested, train.ids.numpy())]
    if len(unknown):
        raise ValueError(f"{len(unknown)} of {len(requested)} requested sample ids are not in D (the training "
                         f"set; they may be in validation, test or the shadow pool, or not exist): "
                         f"{np.sort(unknown)[:10].tolist()}{' ...' if len(unknown) > 10 else ''}")
    return np.sort(requested)


# Found by name: the strategy <name> (config.selection.Strategy, the one list) is the function select_<name> above.
STRATEGIES: dict[str, Callable[[Split, SelectionParams, int], np.ndarray]] = {
    name: globals()[f"select_{name}"] for name in STRATEGY_NAMES}


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
