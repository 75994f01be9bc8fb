"""What EU-k and CF-k share (iau_core.config.unlearning.LastLayersSettings): the last k layers that hold weights
trained on D_r alone, the rest frozen."""

from __future__ import annotations

import copy

from torch import nn

from iau_core.training import recipe_optimizer_over
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import cross_entropy, descend, seeded, shuffled


def last_layers(model: nn.Module, k: int) -> list[nn.Module]:
    """The last `k` modules, in definition order, that hold weights of their own (Linear, Conv, norm layers)."""
    holders = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if not 0 < k <= len(holders):
        raise ValueError(f"k = {k}, but the model has {len(holders)} layers that hold weights")
    return holders[-k:]


def train_last_layers(task: UnlearningTask, k: int, epochs: int, reinitialise: bool) -> Unlearned:
    model = task.copy_model()
    layers = last_layers(model, k)
    if reinitialise:
        # a fresh draw from the layers' own initialisers, seeded by the repeat: never the deployed weights
        fresh = task.build_model(task.seed + 7_919)
        for mine, theirs in zip(layers, last_layers(fresh, k), strict=True):
            mine.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for p in model.parameters():
        p.requires_grad_(False)
    trained = [p for layer in layers for p in layer.parameters()]
    for p in trained:
        p.requires_grad_(True)
    recipe = task.training
    optimizer = recipe_optimizer_over(trained, recipe)
    generator = seeded(task)
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in shuffled(task.retain, recipe.batch_size, generator):
            descend(optimizer, cross_entropy(model, batch))
        if task.observe:
            task.observe(epoch, model)
    for p in model.parameters():
        p.requires_grad_(True)  # the returned model is a whole model again, as every method returns it
    model.eval()
    return Unlearned(model, {"k": k, "epochs": epochs, "reinitialised": str(reinitialise),
                             "layers": ", ".join(type(m).__name__ for m in layers)})
