"""Training figures: a GR epoch over a plain one (gr_epoch_overhead), and K reference models trained together over
one after another (reference_models_speedup: its target is stated for a GPU; on a CPU it is reported). The latter
reads the reference-training mode and says "not available" where it is absent (it was written to run against older
mains too)."""

from __future__ import annotations

import inspect

import torch

from benchmarks.figures import Figure, unavailable
from benchmarks.modes import Mode
from benchmarks.timing import interleaved
from benchmarks.workload import subset
from iau_core.attacks import references as reference_module
from iau_core.config import Params, TrainingParams
from iau_core.data import DataBundle
from iau_core.recipe import model_builder
from iau_core.training import resolve_hvp, train_model

REFERENCE_COUNT = 8  # K of the figure
HVP_CHOICES = ("double_backward", "finite_difference")


def one_epoch(params: Params, bundle: DataBundle, training: TrainingParams, size: int,
              device: torch.device) -> float:
    """Seconds of one epoch of the recipe's loop (its validation look included) from the same initial model."""
    model = model_builder(params, bundle)(params.seed).to(device)
    epoch = training.model_copy(update={"max_epochs": 1, "patience": 1})
    return train_model(model, subset(bundle.train, size), bundle.val, epoch, device, params.seed).seconds


def gr_epoch_overhead(params: Params, bundle: DataBundle, mode: Mode, device: torch.device) -> Figure:
    """GR epoch / plain epoch with the batch reading (params' own HVP choice); the per-sample reading and each
    HVP choice reported beside it. Every variant's epochs run interleaved (plain, GR, per-sample, ..., plain, ...):
    a busy stretch slows all of them, not one. A GR epoch does a plain epoch's work and more: a ratio under 1 is
    impossible, and reported as noisy."""
    size = min(mode.epoch_size, len(bundle.train))
    base = params.training
    alpha = base.gr_alpha or 0.05  # the overhead of GR itself, even where params switch GR off
    hvp = base.gr_hvp
    model = model_builder(params, bundle)(params.seed)
    variants = {"plain": {"gr_alpha": 0.0}, "gr_batch": {"gr_alpha": alpha, "gr_reading": "batch"},
                "gr_per_sample": {"gr_alpha": alpha, "gr_reading": "per_sample"}}
    same_as = {}  # params' own HVP choice is the reading's row: the same epoch, not timed twice
    for reading in ("batch", "per_sample"):
        chosen = resolve_hvp(model, reading, hvp)
        for choice in HVP_CHOICES:
            name = f"gr_{reading}_{choice}"
            if choice == chosen:
                same_as[name] = f"gr_{reading}"
            else:
                variants[name] = {"gr_alpha": alpha, "gr_reading": reading, "gr_hvp": choice}

    def epoch(update: dict):
        training = base.model_copy(update=update)
        return lambda: one_epoch(params, bundle, training, size, device)

    timed = interleaved(device, mode.reps, {name: epoch(update) for name, update in variants.items()})
    rows = {name: t.minimum for name, t in timed.items()} | {name: timed[row].minimum for name, row in same_as.items()}
    chosen = resolve_hvp(model, "batch", hvp)
    note = f"training.gr_hvp = {hvp}{f' ({chosen})' if hvp != chosen else ''} (params.yaml) in the headline value"
    return Figure("gr_epoch_overhead", rows["gr_batch"] / rows["plain"],
                  {"epoch_seconds": rows, "epoch_runs": {name: t.as_row() for name, t in timed.items()},
                   "per_sample_overhead": rows["gr_per_sample"] / rows["plain"], "records": size, "gr_alpha": alpha,
                   "hvp": note},
                  spread={"plain": timed["plain"].spread, "gr_batch": timed["gr_batch"].spread}, floor=1.0,
                  device=device.type)


def reference_trainer(mode_name: str):
    """train_reference_models with the reference-training mode `mode_name` (ensemble | sequential), or None when
    this project has no such mode. Looks for a keyword of train_reference_models first, then for a module-level
    function named after the mode."""
    fn = reference_module.train_reference_models
    for keyword in ("mode", "reference_training", "training_mode", "how"):
        if keyword in inspect.signature(fn).parameters:
            return lambda *args, **kw: fn(*args, **{keyword: mode_name}, **kw)
    if mode_name == "sequential":
        return fn
    for name in (f"train_reference_models_{mode_name}", f"train_references_{mode_name}",
                 "train_reference_ensemble", "train_references_together"):
        if hasattr(reference_module, name):
            return getattr(reference_module, name)
    return None


def reference_models_speedup(params: Params, bundle: DataBundle, mode: Mode, device: torch.device) -> Figure:
    """K = 8 reference models trained together / one after another, on the same pool for the same fixed number
    of epochs (early stopping could end the two ways at different epochs; the work must be the same)."""
    together = reference_trainer("ensemble")
    if together is None:
        return unavailable("reference_models_speedup", "no ensemble reference-training mode in iau_core.attacks "
                           "(the speed-core work adds one)")
    sequential = reference_trainer("sequential")
    pool = subset(bundle.shadow_pool, min(mode.reference_pool, len(bundle.shadow_pool)))
    training = params.training.model_copy(update={"max_epochs": mode.reference_epochs,
                                                  "patience": mode.reference_epochs})
    build = model_builder(params, bundle)

    def run(trainer):
        return lambda: trainer(pool, build, training, REFERENCE_COUNT, device, params.data.split_seed)

    timed = interleaved(device, mode.reps, {"sequential": run(sequential), "ensemble": run(together)})
    one_by_one, at_once = timed["sequential"], timed["ensemble"]
    return Figure("reference_models_speedup", one_by_one.minimum / at_once.minimum,
                  {"sequential_seconds": one_by_one.minimum, "ensemble_seconds": at_once.minimum,
                   "runs": {name: t.as_row() for name, t in timed.items()}, "models": REFERENCE_COUNT,
                   "pool": len(pool), "epochs": mode.reference_epochs},
                  spread={name: t.spread for name, t in timed.items()}, device=device.type)
