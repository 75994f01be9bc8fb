"""CF-k (Goel et al. 2022): fine-tune the last k layers that hold weights on D_r, the layers below frozen
(last_layers.py): D_f fades from those layers by catastrophic forgetting."""

from __future__ import annotations

from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.last_layers import train_last_layers


def cf_k(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.cf_k
    return train_last_layers(task, settings.k, settings.epochs, reinitialise=False)
