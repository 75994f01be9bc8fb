"""The noise floor: the same recipe on D_r with another seed, a second gold model. Its gaps to `retrain` are what two
equally valid retrainings differ by, the floor every other gap is read against."""

from __future__ import annotations

from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.retrain import train_on_retained

ALT_SEED_OFFSET = 10_000  # retrain_alt's seed is the repeat's seed plus this: another init and shuffling


def retrain_alt(task: UnlearningTask) -> Unlearned:
    return train_on_retained(task, task.seed + ALT_SEED_OFFSET)
