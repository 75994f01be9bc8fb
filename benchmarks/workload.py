"""The data every timed path reads: Fashion-MNIST decoded once per process into tensors on the device, so no
timing includes decoding. D is the first |D| records of the shuffled official training split (so 8k is inside 20k
inside 60k); validation, test and the shadow pool come from the official test split."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from benchmarks import PROJECT_ROOT
from iau_core.config import Params, dataset_params
from iau_core.data import DataBundle, Split, as_inputs
from iau_core.datasets import read_raw


@lru_cache(maxsize=1)
def _fashion_mnist() -> tuple[Split, Split]:
    """(official train split, official test split), decoded, normalized, shuffled by split seed 0."""
    section = dataset_params("fashion_mnist")
    raw = read_raw(section, PROJECT_ROOT)
    x = as_inputs(raw.features, section.normalize)
    y = torch.tensor(raw.records["label"].to_numpy(np.int64))
    ids = torch.tensor(raw.records["sample_id"].to_numpy(np.int64))
    everything = Split(x, y, ids)
    source = raw.records["source"].to_numpy()
    rng = np.random.default_rng(0)
    train = rng.permutation(np.flatnonzero(source == "train"))
    test = rng.permutation(np.flatnonzero(source == "test"))
    return everything.take(train), everything.take(test)


def fashion_mnist_bundle(train_size: int, val_size: int, test_size: int, shadow_size: int,
                         device: torch.device) -> DataBundle:
    """The roles at these sizes, as tensors on `device`."""
    train, heldout = _fashion_mnist()
    if train_size > len(train):
        raise ValueError(f"|D| = {train_size} but Fashion-MNIST's training split has {len(train)} records")
    if val_size + test_size + shadow_size > len(heldout):
        raise ValueError(f"validation + test + shadow pool = {val_size + test_size + shadow_size} records but "
                         f"the test split has {len(heldout)}")
    cuts = np.cumsum([val_size, test_size, shadow_size])
    val, test, shadow = (heldout.take(torch.arange(a, b)) for a, b in zip([0, *cuts[:-1]], cuts, strict=True))
    return DataBundle(train=train.take(torch.arange(train_size)).to(device), val=val.to(device),
                      test=test.to(device), shadow_pool=shadow.to(device), num_classes=10,
                      input_shape=tuple(train.x.shape[1:]))


def subset(split: Split, size: int) -> Split:
    """The first `size` records (D at a smaller size, still on its device)."""
    return split.take(torch.arange(size))


def recipe(params: Params, max_epochs: int | None) -> Params:
    """params with the training recipe's epochs capped (tiny mode); unchanged for None."""
    if max_epochs is None:
        return params
    training = params.training.model_copy(update={"max_epochs": max_epochs, "patience": max_epochs})
    return params.model_copy(update={"training": training})


def save_split(split: Split, path) -> None:
    """A split as one tensor file, so a child process reads tensors instead of decoding the dataset."""
    torch.save({"x": split.x.cpu(), "y": split.y.cpu(), "ids": split.ids.cpu()}, path)


def load_split(path) -> Split:
    saved = torch.load(path, weights_only=True)
    return Split(saved["x"], saved["y"], saved["ids"])
