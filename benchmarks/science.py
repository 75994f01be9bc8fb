"""The science figures, measured in one process on one trained model: the cached IAU step against retraining
(speedup_vs_retrain, with the quality gaps beside it), against its lower limit (iau_vs_limit), the eta rule's
validation passes, and the scaling rows in |D| and |D_f|."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from benchmarks.figures import Figure, unavailable
from benchmarks.modes import Mode
from benchmarks.timing import BURST, Timed, interleaved, repeat
from benchmarks.training_cost import reference_trainer
from benchmarks.workload import fashion_mnist_bundle, subset
from iau_core.attacks import ReferenceModel, fit_lira, train_reference_models
from iau_core.config import Params
from iau_core.data import DataBundle, Split
from iau_core.recipe import lira_candidates, model_builder, train_original
from iau_core.selection import select_forget_set
from iau_core.training import accuracy, predict_logits
from iau_core.unlearning import UnlearningTask, run_method
from iau_core.unlearning.gradients import SummedGradient, loss_gradient, summed_gradient

PASSES_KEY = "eta_rule.validation_passes"  # EtaChoice.validation_passes as the method's choices carry it


@dataclass
class Trained:
    """What every science figure shares: the data at the headline size, the deployed model, D's cache."""

    params: Params
    bundle: DataBundle
    model: nn.Module
    cache: SummedGradient
    cache_seconds: float
    train_seconds: float
    epochs: int


def prepare(params: Params, mode: Mode, device: torch.device) -> Trained:
    bundle = fashion_mnist_bundle(mode.train_size, mode.val_size, mode.test_size, mode.shadow_size, device)
    model, report = train_original(params, bundle, device)
    model.eval()
    cache = repeat(device, 1, lambda: summed_gradient(model, bundle.train, params.unlearning.batch_size, bundle.val))
    return Trained(params, bundle, model, cache.result, cache.minimum, report.seconds, report.epochs_run)


def make_task(trained: Trained, train: Split, forget_ids: np.ndarray, device: torch.device) -> UnlearningTask:
    forget, retain = _partition(train, forget_ids)
    params = trained.params
    return UnlearningTask(model=trained.model, retain=retain, forget=forget, val=trained.bundle.val,
                          build_model=model_builder(params, trained.bundle), training=params.training,
                          unlearning=params.unlearning, device=device, seed=params.seed)


def _partition(split: Split, sample_ids: np.ndarray) -> tuple[Split, Split]:
    """Split.partition that also works for a split on an accelerator (ids are compared on the CPU)."""
    inside = torch.from_numpy(np.isin(split.ids.cpu().numpy(), sample_ids)).to(split.ids.device)
    return split.take(inside.nonzero().squeeze(1)), split.take((~inside).nonzero().squeeze(1))


@dataclass
class Headline:
    """The headline figures, and what later figures reuse: retraining's timing at the headline |D| (the scaling
    rows, batch_cost_vs_retrain) and the attacker's reference models (the gate's attack in batch_cost_vs_retrain)."""

    figures: list[Figure]
    retrain: Timed
    forget_size: int
    references: list[ReferenceModel]


def headline(trained: Trained, mode: Mode, device: torch.device) -> Headline:
    """speedup_vs_retrain (with mu_gap, lira_auc_gap), iau_vs_limit, eta_rule_passes. The step, retraining and the
    limit run interleaved (step, retrain, limit, step, ...); each ratio is of the sides' minimums."""
    params, bundle, model = trained.params, trained.bundle, trained.model
    forget_ids = select_forget_set(bundle.train.to("cpu"), params.selection, params.seed)
    task = make_task(trained, bundle.train, forget_ids, device)
    cached_task = replace(task, summed_gradient=trained.cache)
    bs = params.unlearning.batch_size
    timed = interleaved(device, mode.reps, {
        "step": lambda: run_method("iau", cached_task),
        "retrain": lambda: run_method("retrain", task),
        # The least any step can cost: its gradient over D_f and one look at the validation set.
        "limit": lambda: (loss_gradient(model, task.forget, bs, "sum"), predict_logits(model, task.val, device))},
        bursts={"step": BURST, "limit": BURST})  # sub-second sides: the least of a few calls in a row
    step, retrain, limit = timed["step"], timed["retrain"], timed["limit"]
    references = attacker_references(params, bundle, device)
    gaps = quality_gaps(params, bundle, task, step.result.model, retrain.result.model, references, device)
    sizes = {"train_size": len(bundle.train), "forget_size": len(task.forget), "val_size": len(bundle.val)}
    passes = step.result.choices.get(PASSES_KEY)
    figures = [
        Figure("speedup_vs_retrain", retrain.minimum / step.minimum,
               {"retrain_seconds": retrain.as_row(), "iau_cached_step_seconds": step.as_row(), **gaps, **sizes,
                "retrain_epochs": retrain.result.choices["epochs_run"]},
               spread={"retrain": retrain.spread, "step": step.spread}, device=device.type),
        Figure("iau_vs_limit", step.minimum / limit.minimum,
               {"iau_cached_step_seconds": step.as_row(), "limit_seconds": limit.as_row(),
                "limit": "one forward+backward over D_f + one forward over the validation set", **sizes,
                "validation_passes": passes, "forget_reads": step.result.choices.get("eta_rule.candidates")},
               spread={"step": step.spread, "limit": limit.spread},
               # a step that reads D_f's gradient and looks at the validation set does the limit's work at least
               floor=1.0 if passes is None or passes >= 1 else None, device=device.type),
        eta_passes(step.result.choices),
    ]
    return Headline(figures, retrain, len(task.forget), references)


def eta_passes(choices: dict) -> Figure:
    """The eta rule's validation passes, as the rule reports them (EtaChoice.validation_passes)."""
    candidates = choices.get("eta_rule.candidates")
    if PASSES_KEY in choices:
        return Figure("eta_rule_passes", float(choices[PASSES_KEY]),
                      {"candidates": candidates, "eta_chosen": choices.get("eta_chosen")})
    if candidates is None:
        return unavailable("eta_rule_passes", "the method reported no eta rule (eta is fixed in params)")
    # The rule on main makes one validation pass for the target loss, then one per candidate it tries.
    return Figure("eta_rule_passes", float(candidates) + 1,
                  {"candidates": candidates, "eta_chosen": choices.get("eta_chosen"),
                   "note": "EtaChoice.validation_passes not available: counted as 1 + candidates (the rule of main)"})


def attacker_references(params: Params, bundle: DataBundle, device: torch.device) -> list[ReferenceModel]:
    """The attacker's reference models, trained on the shadow pool with the same recipe."""
    train = reference_trainer(getattr(params.lira, "reference_training", "sequential")) or train_reference_models
    return train(bundle.shadow_pool, model_builder(params, bundle), params.training, params.lira.num_reference,
                 device, params.data.split_seed)


def quality_gaps(params: Params, bundle: DataBundle, task: UnlearningTask, iau_model: nn.Module,
                 retrained: nn.Module, references: list[ReferenceModel], device: torch.device) -> dict:
    """mu_gap and lira_auc_gap of the IAU model to the retrained one (docs/metrics.md): equal quality, visible."""
    lira = fit_lira(references, lira_candidates(bundle), params.lira, device)
    test_acc = {name: accuracy(m, bundle.test, device) for name, m in (("iau", iau_model), ("retrain", retrained))}
    auc = {name: lira.roc(m, task.forget, bundle.test, device).auc
           for name, m in (("iau", iau_model), ("retrain", retrained))}
    return {"mu_gap": abs(test_acc["iau"] - test_acc["retrain"]), "lira_auc_gap": abs(auc["iau"] - auc["retrain"]),
            "test_acc": test_acc, "lira_auc": auc, "lira_references": len(references)}


def scaling(trained: Trained, mode: Mode, retrained: dict, device: torch.device) -> dict:
    """Rows: the IAU step cached and uncached (and retraining where the mode times it) at each |D|, on the
    headline model; then the step at each |D_f| on the headline D. `retrained`: retraining already timed, by |D|."""
    params = trained.params
    full = fashion_mnist_bundle(max(mode.scaling_sizes), 0, 0, 0, device).train
    by_size = []
    for size in mode.scaling_sizes:
        train = subset(full, size)
        cache = repeat(device, 1, lambda train=train: summed_gradient(trained.model, train,
                                                                      params.unlearning.batch_size,
                                                                      trained.bundle.val))
        forget_ids = select_forget_set(train.to("cpu"), params.selection, params.seed)
        row = {"train_size": size, "forget_size": len(forget_ids), "cache_seconds": cache.minimum,
               **_steps(trained, train, forget_ids, cache.result, mode, device)}
        if size in mode.retrain_scaling_sizes:
            task = make_task(trained, train, forget_ids, device)
            timed = retrained.get(size) or repeat(device, mode.reps, lambda task=task: run_method("retrain", task))
            row["retrain_seconds"] = timed.minimum
            row["retrain_over_cached_step"] = timed.minimum / row["step_cached_seconds"]
            row["spread"]["retrain"] = timed.spread
        else:
            row["retrain_seconds"] = None
            row["retrain_note"] = "timed in the full run only (minutes per repetition)"
        by_size.append(row)
    by_forget = []
    rng = np.random.default_rng(0)
    train = trained.bundle.train
    for k in mode.forget_sizes:
        ids = rng.choice(train.ids.cpu().numpy(), size=k, replace=False)
        by_forget.append({"train_size": len(train), "forget_size": k,
                          **_steps(trained, train, ids, trained.cache, mode, device)})
    return {"by_train_size": by_size, "by_forget_size": by_forget,
            "model": f"the headline model (trained on |D| = {len(train)}) at every size"}


def _steps(trained: Trained, train: Split, forget_ids: np.ndarray, cache: SummedGradient, mode: Mode,
           device: torch.device) -> dict:
    """The step with and without the cache, interleaved; minimums, and each side's spread."""
    task = make_task(trained, train, forget_ids, device)
    timed = interleaved(device, mode.reps, {"cached": lambda: run_method("iau", replace(task, summed_gradient=cache)),
                                            "uncached": lambda: run_method("iau", task)})
    cached, uncached = timed["cached"], timed["uncached"]
    return {"step_cached_seconds": cached.minimum, "step_uncached_seconds": uncached.minimum,
            "uncached_over_cached": uncached.minimum / cached.minimum,
            "spread": {"cached": cached.spread, "uncached": uncached.spread}}
