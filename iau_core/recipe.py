"""The recipe, written once: params -> per seed: base models, what the attacks see, the forget set, every method
scored -> one comparison table per seed. The flow (flows/unlearn.py), the bare command line (python -m iau_core) and
the studies all run `run_recipe`; they differ only in their `Steps`: how a step is carried out and recorded
(Prefect tasks that record to MLflow, or plain calls that keep everything in memory), never in what it computes.

`params` inside the loop are one repeat's (Params.for_seed): their `seed` drives model initialisation, shuffling and
the forget set. The attacker's reference models depend on the data split only, so every repeat shares them.

`model_builder` lives in iau_core/models.py (re-exported here for its callers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from iau_core.attacks import Attacks, AttackSetup, ReferenceModel, ShadowReport, fit_all, train_reference_models
from iau_core.config import REFERENCE_METHODS, Params, Recipe, base_recipe
from iau_core.data import DataBundle, Split
from iau_core.metrics import attack_strengths, compare, make_eval_sets, score_model
from iau_core.models import member_builder, model_builder
from iau_core.selection import select_forget_set
from iau_core.sharding import checkpoints_of, train_fresh
from iau_core.training import Progress, TrainReport
from iau_core.unlearning import MethodResult, UnlearningTask, run_method

Model = TypeVar("Model")  # a base model as a Steps implementation holds it: a module, or a reference to a stored one
AttackHandle = TypeVar("AttackHandle")  # the fitted attacks, or a reference to where they are stored


def recipe_params(params: Params, recipe: Recipe) -> Params:
    """The params that train the base model of `recipe` (config.unlearning.BASE_RECIPES): the deployed recipe,
    or the same with gr_alpha = 0 ('no_gr', the ablation's model without gradient restriction)."""
    if recipe == "deployed":
        return params
    return params.model_copy(update={"training": params.training.model_copy(update={"gr_alpha": 0.0})})


def train_original(params: Params, bundle: DataBundle, device: torch.device,
                   progress: Progress | None = None) -> tuple[nn.Module, TrainReport]:
    """The deployed model: trained on all of D with the GR loss; with training.shards or slices > 1, shard by shard
    and slice by slice (iau_core.sharding), its checkpoints attached to it (sharding.checkpoints_of)."""
    initial = model_builder(params, bundle)(params.seed).to(device)
    return train_fresh(initial, bundle.train, bundle.val, params.training, device, params.seed, progress)


def train_references(params: Params, bundle: DataBundle, device: torch.device,
                     progress: Progress | None = None) -> list[ReferenceModel]:
    """The attacker's models, from the shadow pool only: the attacker never sees D, val or test. Each is one
    network, whether or not the deployed model is sharded."""
    return train_reference_models(bundle.shadow_pool, member_builder(params, bundle), params.training,
                                  reference_count(params), device, params.data.split_seed, progress,
                                  mode=params.lira.reference_training)


def reference_count(params: Params) -> int:
    """How many reference models the attacks need: LiRA uses all of them, the shadow attack the first few."""
    return max(params.lira.num_reference, params.mia.num_shadow)


def lira_candidates(bundle: DataBundle) -> Split:
    """The records the per-record attacks need reference statistics for: D (members, and any D_f) and the held-out
    test set."""
    train, test = bundle.train, bundle.test
    return Split(torch.cat([train.x, test.x]), torch.cat([train.y, test.y]), torch.cat([train.ids, test.ids]))


def attack_setup(params: Params, bundle: DataBundle, device: torch.device) -> AttackSetup:
    """What every attack may use besides the reference models; the attacker follows the data split only."""
    return AttackSetup(params, lira_candidates(bundle), bundle.shadow_pool, bundle.num_classes, device,
                       params.data.split_seed)


def fit_attacks(params: Params, bundle: DataBundle, references: list[ReferenceModel],
                device: torch.device) -> tuple[Attacks, ShadowReport]:
    """Every registered attack on the same reference models, and how the shadow attack's fit went."""
    attacks = fit_all(references, attack_setup(params, bundle, device))
    return attacks, attacks.shadow.report


def unlearn_and_score(method: str, original: nn.Module, forget_ids: np.ndarray, params: Params,
                      bundle: DataBundle, attacks: Attacks, device: torch.device,
                      progress: Progress | None = None) -> MethodResult:
    """Run one method on (D_r, D_f) with inputs already on the device, then score what it returns."""
    forget, retain = bundle.train.partition(forget_ids)
    task = UnlearningTask(
        model=original.to(device), retain=retain.to(device), forget=forget.to(device), val=bundle.val.to(device),
        build_model=model_builder(params, bundle), training=params.training, unlearning=params.unlearning,
        device=device, seed=params.seed, progress=progress, shards=checkpoints_of(original),
    )
    result = run_method(method, task)
    sets = make_eval_sets(retain, forget, bundle.test, params.seed)
    return replace(result, scores=score_model(result.model, sets, attacks, device))


def methods_to_run(params: Params) -> list[str]:
    """References first (do-nothing, the gold model, the noise floor), then the compared methods; with a sharded
    model (training.shards > 1) also `sisa`, its exact deletion, beside them."""
    methods = [*REFERENCE_METHODS, *params.unlearning.methods]
    return methods + ["sisa"] if params.training.shards > 1 and "sisa" not in methods else methods


# --- the loop ------------------------------------------------------------------------------------------------------

class Steps(Protocol[Model, AttackHandle]):
    """How each step of the recipe is carried out. The loop decides what runs, in which order, on what."""

    def attacks(self) -> AttackHandle:
        """The attacker's reference models and the attacks fitted on them (shared by every seed)."""

    def base_model(self, params: Params, recipe: Recipe) -> Model:
        """The base model of `recipe` (the deployed GR model, or one a method declares) for params' seed."""

    def attack_strength(self, params: Params, base: Model, attacks: AttackHandle) -> dict[str, float]:
        """What the attacks see on the deployed model: all of D against held-out records."""

    def forget_set(self, params: Params) -> np.ndarray:
        """Sorted sample ids of D_f for params' seed."""

    def first_seed(self, params: Params, bases: dict[Recipe, Model], forget_ids: np.ndarray) -> None:
        """Once, on the first seed: what only needs one look (the flow's gradient-norm plot and lineage tags)."""

    def unlearn(self, method: str, params: Params, base: Model, attacks: AttackHandle,
                forget_ids: np.ndarray) -> MethodResult:
        """One method on the base model it declares, scored."""


@dataclass
class Comparison:
    """Everything the loop produced: every method's result per seed, what the attacks saw per seed, and the
    forget set of each seed."""

    results: list[MethodResult] = field(default_factory=list)
    strengths: list[dict[str, float]] = field(default_factory=list)
    forget_sets: dict[int, np.ndarray] = field(default_factory=dict)

    def tables(self) -> list[pd.DataFrame]:
        return per_seed_tables(self.results)

    def role_sizes(self, val_records: int) -> dict[str, int]:
        """The sizes that decide whether the verdicts mean anything: the smallest D_f over seeds, the validation
        set (iau_core.verdicts.small_roles)."""
        forget = min((len(ids) for ids in self.forget_sets.values()), default=0)
        return {"forget": forget, "val": val_records}


def per_seed_tables(results: list[MethodResult]) -> list[pd.DataFrame]:
    """One Table II per seed (gaps to that seed's retrain), each with a `seed` column, seeds in order."""
    tables = []
    for seed in sorted({r.seed for r in results}):
        mine = [r for r in results if r.seed == seed]
        table = compare({r.method: r.scores.values for r in mine}, {r.method: r.seconds for r in mine})
        tables.append(table.assign(seed=seed))
    return tables


def run_recipe(params: Params, steps: Steps) -> Comparison:
    """Per seed: the base models the methods need (deployed first), what the attacks see, the forget set, then
    every method (references first) on its base model."""
    attacks = steps.attacks()
    out = Comparison()
    for seed in params.seeds:
        run = params.for_seed(seed)
        methods = methods_to_run(run)
        recipes = sorted({base_recipe(m) for m in methods}, key=lambda r: r != "deployed")
        bases = {recipe: steps.base_model(run, recipe) for recipe in recipes}
        out.strengths.append(steps.attack_strength(run, bases["deployed"], attacks))
        forget_ids = steps.forget_set(run)
        out.forget_sets[seed] = forget_ids
        if seed == params.seeds[0]:
            steps.first_seed(run, bases, forget_ids)
        out.results += [steps.unlearn(m, run, bases[base_recipe(m)], attacks, forget_ids) for m in methods]
    return out


@dataclass
class LocalSteps:
    """The recipe's steps as plain calls in this process, models kept in memory: `python -m iau_core` and the
    studies. Base models and the fitted attacks are made once and reused (a study that runs the loop for several
    selections trains each base model once). `log` receives progress lines."""

    params: Params
    bundle: DataBundle
    device: torch.device
    log: Progress = print
    models: dict[tuple[int, Recipe], nn.Module] = field(default_factory=dict)
    fitted: Attacks | None = None

    def attacks(self) -> Attacks:
        if self.fitted is None:
            references = train_references(self.params, self.bundle, self.device, self.log)
            self.fitted, _ = fit_attacks(self.params, self.bundle, references, self.device)
        return self.fitted

    def base_model(self, params: Params, recipe: Recipe) -> nn.Module:
        key = (params.seed, recipe)
        if key not in self.models:
            model, report = train_original(recipe_params(params, recipe), self.bundle, self.device)
            self.log(f"seed {params.seed}: {recipe} base model {report.epochs_run} epochs, best val acc "
                     f"{report.best_val_acc:.2f}%")
            self.models[key] = model
        return self.models[key]

    def attack_strength(self, params: Params, base: nn.Module, attacks: Attacks) -> dict[str, float]:
        strengths = attack_strengths(base, self.bundle.train, self.bundle.test, attacks, self.device, params.seed)
        self.log("  " + ", ".join(f"{k} {v:.3f}" for k, v in strengths.items()))
        return strengths

    def forget_set(self, params: Params) -> np.ndarray:
        return select_forget_set(self.bundle.train, params.selection, params.seed)

    def first_seed(self, params: Params, bases: dict[Recipe, nn.Module], forget_ids: np.ndarray) -> None:
        pass

    def unlearn(self, method: str, params: Params, base: nn.Module, attacks: Attacks,
                forget_ids: np.ndarray) -> MethodResult:
        return unlearn_and_score(method, base, forget_ids, params, self.bundle, attacks, self.device)
