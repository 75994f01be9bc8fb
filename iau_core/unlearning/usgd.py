"""USGD (Thudi et al. 2022, 'Unrolling SGD'): single-gradient unlearning of a model trained by USGD's own recipe.

USGD cannot unlearn the deployed model: its update needs the initial weights, plain SGD steps and how often each
record was sampled, and the deployed recipe (Adam, GR, early stopping that restores an earlier epoch) keeps none
of them. So this method first trains its own original on D (D_r plus D_f) from the deployed model's initial
weights (`build_model(seed)`, the same w_0), by the recipe the paper declares (iau_core/unrolled_sgd.py), then
applies the update w_T + sum_{i in D_f} c_i * grad loss_i(w_0). The returned model is that original, unlearned;
its own original's numbers are recorded with it (usgd.original_*), and `usgd.train_seconds` /
`usgd.unlearn_seconds` split the method's time, since `unlearn_seconds` of this method includes training its
original. Settings: iau_core.config.unlearning.UsgdSettings.
"""

from __future__ import annotations

import time

from iau_core.config.unlearning import UsgdSettings
from iau_core.training import accuracy, per_sample_losses
from iau_core.unlearning.base import Unlearned, UnlearningTask
from iau_core.unlearning.loop import joined, settings_choices
from iau_core.unrolled_sgd import single_gradient_unlearn, train_unrolled


def usgd(task: UnlearningTask) -> Unlearned:
    settings: UsgdSettings = task.unlearning.usgd
    data = joined(task.retain, task.forget)
    original = task.build_model(task.seed).to(task.device)
    run = train_unrolled(original, data, settings, task.seed)
    start = time.perf_counter()
    model = single_gradient_unlearn(run, task.forget, settings)
    unlearn_seconds = time.perf_counter() - start
    forget_before = per_sample_losses(run.model, task.forget, task.device).mean().item()
    forget_after = per_sample_losses(model, task.forget, task.device).mean().item()
    return Unlearned(model, settings_choices(settings) | {
        "base_recipe": "usgd (its own original, trained in the method)",
        "usgd.train_seconds": run.seconds, "usgd.unlearn_seconds": unlearn_seconds,
        "usgd.original_val_acc": accuracy(run.model, task.val, task.device),
        "usgd.original_forget_loss": forget_before, "usgd.unlearned_forget_loss": forget_after,
        "usgd.times_sampled": float(run.times_sampled[-len(task.forget):].float().mean().item()),
    })
