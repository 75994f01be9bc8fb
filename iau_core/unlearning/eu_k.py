"""EU-k (Goel et al. 2022): reinitialise the last k layers that hold weights and train them on D_r, the layers
below frozen (last_layers.py). Exact for those layers; the frozen ones still carry what they learnt of D_f."""

from __future__ import annotations

from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.last_layers import train_last_layers


def eu_k(task: UnlearningTask) -> Unlearned:
    settings = task.unlearning.eu_k
    return train_last_layers(task, settings.k, settings.epochs, reinitialise=True)
