"""batch_cost_vs_retrain (issue 29): what one nightly deletion batch costs end to end, the IAU way against
retraining, on the headline model and D, for each deletion count of the mode (10 / 100 / 1,000).

- An IAU batch: the cached step (D's summed gradient cached), the gate (iau_core.deletion.evaluate_gate with the
  headline attack, as ops/batch_steps.gate_candidate calls it: the attack on D_f against label-matched held-out
  records),
  registration, forgetting and the servable copy's export (batch_stores: the pipeline's own calls on throwaway
  MLflow and DVC stores), and the refresh of the cached gradient at the new champion for the next batch
  (refresh_cached_gradient: as params.yaml configures it, and the exact pass beside it, with the ratio each gives).
- A retraining batch: retraining on D_r (the headline's timing, interleaved there with the step), and the same
  gate, registration, forgetting and export as measured here (the same calls on a model of the same size). A
  pipeline that only retrains keeps no cache, so it pays no refresh (ops/batch.py refreshes after its retrain rung
  too, since the next batch may take the IAU rung).

Amortized: each deletion count runs a chain of consecutive batches (at least nightly.gradient_refresh.full_every,
so the refresh's cadence is paid inside it), each starting from the champion, D and cached gradient the one before
left, as the nightly does when the gate accepts IAU (the chains take turns: 10, 100, 1,000, 10, ...). The parts
that do the same work every batch (step, gate, registration, forgetting, export) count their least time; the refresh
counts what the chain really ran: each kind (the estimate accepted; the exact pass after an estimate that drifted
past max_drift; the exact pass alone) at its least time, weighted by how often the chain ran it. The figure is the
retraining batch's cost over the IAU batch's, at the deletion count where that is smallest; each count's row has
every part, the totals, the step-only ratio (retraining over the cached step) and, beside it, the cost the gate's
observed acceptance implies (a rejected batch retrains as well).
Not measured: loading the champion and its cached gradient from MLflow, storing the refreshed gradient there, the
ledger's writes, the audit (a Prefect artifact) and the flow process's start (orchestration_overhead has those).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from benchmarks import batch_stores
from benchmarks.figures import Figure
from benchmarks.modes import Mode
from benchmarks.science import Headline, Trained, make_task
from benchmarks.timing import clock, spread_of
from iau_core.attacks import Attack, fit_attack
from iau_core.config import Params
from iau_core.data import Split
from iau_core.deletion import evaluate_gate
from iau_core.recipe import attack_setup
from iau_core.unlearning import UnlearningTask, run_method
from iau_core.unlearning.gradients import SummedGradient, summed_gradient
from iau_core.unlearning.refresh import refresh_summed_gradient

SHARED = ("gate", "registration", "forgetting", "export")  # what a retraining batch pays as well
IAU_PARTS = ("step", "gate", "registration", "forgetting", "refresh", "export")  # in ops/batch.py's order
STEADY = ("step", "gate", "registration", "forgetting", "export")  # the same work every batch: least of the chain


@dataclass
class Chain:
    """Consecutive batches of one deletion count: what the next batch starts from, and what each one cost."""

    deletions: int
    model: nn.Module
    train: Split
    cache: SummedGradient
    batches: list[dict] = field(default_factory=list)


def refresh_cached_gradient(champion: nn.Module, candidate: nn.Module, task: UnlearningTask,
                            previous: SummedGradient, params: Params, batch: int, device: torch.device) -> dict:
    """The refresh of D's cached gradient for the next batch, the one place the benchmark times it, both ways:
    `refresh` as params.yaml configures it (nightly.gradient_refresh: iau_core/unlearning/refresh.py, which
    corrects the previous cache from a sample of D_r, or falls back to the exact pass), and `refresh_exact`, the
    full pass over D_r at the new champion (gradients.summed_gradient, with the validation logits).
    (ops/batch.py refreshes through stores.champion.store_summed_gradient, which calls the same function and stores
    the result in MLflow.)"""
    bs = params.unlearning.batch_size
    exact, _ = clock(device, lambda: summed_gradient(candidate.to(device), task.retain, bs, task.val))
    seconds, (cache, record) = clock(device, lambda: refresh_summed_gradient(
        previous, champion, candidate, task.forget, task.retain, task.val, params.nightly.gradient_refresh, bs,
        batch))
    # The kind of work the refresh did: an exact pass after a drifting estimate paid for both.
    kind = record.mode if not record.fell_back else "exact after the estimate" if "drift" in record.reason else "exact"
    return {"refresh": seconds, "refresh_exact": exact, "refresh_mode": f"{record.mode} ({record.reason})",
            "refresh_kind": kind, "cache": cache}


def measure(trained: Trained, headline: Headline, mode: Mode, device: torch.device) -> Figure:
    """The figure (module docstring)."""
    params, bundle = trained.params, trained.bundle
    attack = fit_attack(params.attacks.headline, headline.references, attack_setup(params, bundle, device))
    rng = np.random.default_rng(params.seed)
    chains = [Chain(k, trained.model, bundle.train, trained.cache) for k in mode.batch_deletions]
    length = max(mode.batch_reps, params.nightly.gradient_refresh.full_every)
    example = bundle.test.x[:2]
    with batch_stores.throwaway_stores(mode.forgetting_dataset, params.seed) as stores:
        # The process's first registration and export pay torch.export's one-off set-up: timed apart (a warm worker
        # has paid it), on a copy (registration moves the model it logs to the CPU).
        cold, first = clock(device, lambda: batch_stores.register(stores, params, copy.deepcopy(trained.model),
                                                                   example, {}, 0, 0))
        batch = 0
        for _ in range(length):
            for chain in chains:
                batch += 1
                forget_ids = rng.choice(chain.train.ids.cpu().numpy(), chain.deletions, replace=False)
                task = replace(make_task(trained, chain.train, forget_ids, device), model=chain.model)
                chain.batches.append(_one_batch(trained, task, chain.cache, attack, stores, example, batch, device))
                # the next batch starts where this one left: its candidate, D without D_f, the refreshed cache
                chain.model, chain.train = chain.batches[-1].pop("candidate").to(device), task.retain
                chain.cache = chain.batches[-1].pop("cache")
    rows = [_row(chain.deletions, chain.batches, headline) for chain in chains]
    worst = min(rows, key=lambda r: r["batch_cost_vs_retrain"])
    spread = {f"iau batch, {r['deletions']:,} deletions": r["iau_batch"]["spread"] for r in rows}
    spread["retrain batch"] = max(r["retrain_batch"]["spread"] for r in rows)
    return Figure("batch_cost_vs_retrain", worst["batch_cost_vs_retrain"], {
        "train_size": len(bundle.train), "deletions": worst["deletions"], "by_deletions": rows,
        "retrain_seconds": headline.retrain.as_row(), "retrain_forget_size": headline.forget_size,
        "attack": params.attacks.headline, "refresh": f"nightly.gradient_refresh: "
        f"{params.nightly.gradient_refresh.model_dump()} (refresh_cached_gradient); each row's refresh_exact and "
        "batch_cost_vs_retrain_exact_refresh: the exact pass over D_r instead",
        "first_registration": {"seconds": cold, "parts": first.parts, "inner": first.inner, "export": first.export},
        "forgetting": f"stores.data.forget_records on a throwaway DVC repository of {mode.forgetting_dataset} "
                      "with a local remote",
        "chain": f"{length} consecutive batches per deletion count, each accepted (as when the gate passes IAU)",
        "retraining": f"timed once at the headline's |D_f| = {headline.forget_size:,} (a chain's D_r shrinks by "
                      f"at most {length * max(mode.batch_deletions):,} records)"}, spread=spread, device=device.type)


def _one_batch(trained: Trained, task: UnlearningTask, cache: SummedGradient, attack: Attack,
               stores: batch_stores.Stores, example: torch.Tensor, batch: int, device: torch.device) -> dict:
    """One IAU batch from task.model with D's gradient `cache`; seconds of each part (ops/batch.py's order: the
    refresh and the export come after the requests are done, yet every batch pays them), the candidate and the
    refreshed cache."""
    params = trained.params
    cached = replace(task, summed_gradient=cache)
    step_seconds, step = clock(device, lambda: run_method("iau", cached))
    gate_seconds, gate = clock(device, lambda: evaluate_gate(
        task.model, step.model, task.forget, task.val, trained.bundle.test, attack, params.nightly.gate, device,
        params.seed, params.attacks.headline))
    gates = {"iau": {**gate.as_dict(), "seconds": step.seconds, "accepted": gate.passed}}
    registration = batch_stores.register(stores, params, step.model, example, gates, batch, len(task.forget))
    forgetting = batch_stores.forget(stores, len(task.forget), batch)
    refresh = refresh_cached_gradient(task.model, step.model, task, cache, params, batch, device)
    return {"candidate": step.model, "step": step_seconds, "gate": gate_seconds,
            "registration": sum(registration.parts.values()),
            "forgetting": forgetting, **refresh, "export": registration.export,
            "registration_parts": registration.parts | {f"inner.{k}": v for k, v in registration.inner.items()},
            "gate_passed": gate.passed, "privacy_verdict": gate.privacy_verdict}


def _row(deletions: int, reps: list[dict], headline: Headline) -> dict:
    """One deletion count's chain: every part's cost and spread, both batches' costs, the ratios."""
    parts = {name: _least([r[name] for r in reps]) for name in STEADY}
    parts["refresh"] = _amortized_refresh(reps)
    registration = {name: _least([r["registration_parts"].get(name, 0.0) for r in reps])
                    for name in reps[0]["registration_parts"]}
    retrain = headline.retrain
    iau_cost = sum(parts[name]["seconds"] for name in IAU_PARTS)
    retrain_cost = retrain.minimum + sum(parts[name]["seconds"] for name in SHARED)
    exact_refresh = _least([r["refresh_exact"] for r in reps])
    iau_exact_cost = iau_cost - parts["refresh"]["seconds"] + exact_refresh["seconds"]
    # The refresh's kinds differ by design: the spread that says "disturbed" is of the steady parts' totals and of
    # each kind's own runs.
    steady_totals = [sum(r[name] for name in STEADY) for r in reps]
    retrain_totals = [retrain.runs[i % len(retrain.runs)] + sum(r[name] for name in SHARED)
                      for i, r in enumerate(reps)]
    passed = [r["gate_passed"] for r in reps]
    accepted = sum(passed) / len(passed)
    # A batch the gate rejects escalates: it pays the IAU attempt and then the retraining batch.
    expected = iau_cost + (1 - accepted) * retrain_cost
    return {"deletions": deletions, "batches": len(reps), "parts": parts, "registration_parts": registration,
            "iau_batch": {"seconds": iau_cost, "spread": max(spread_of(steady_totals), parts["refresh"]["spread"]),
                          "steady_runs": steady_totals},
            "retrain_batch": {"seconds": retrain_cost, "spread": spread_of(retrain_totals), "runs": retrain_totals},
            "batch_cost_vs_retrain": retrain_cost / iau_cost,
            "refresh_modes": [r["refresh_mode"] for r in reps], "refresh_exact": exact_refresh,
            "iau_batch_exact_refresh": iau_exact_cost,
            "batch_cost_vs_retrain_exact_refresh": retrain_cost / iau_exact_cost,
            "speedup_vs_retrain": retrain.minimum / parts["step"]["seconds"],
            "gate": {"passed": passed, "privacy_verdict": reps[-1]["privacy_verdict"]},
            "gate_accepted": accepted, "batch_cost_vs_retrain_with_gate": retrain_cost / expected}


def _amortized_refresh(reps: list[dict]) -> dict:
    """The refresh over the chain: each kind of work at its least time, weighted by how often the chain ran it."""
    kinds: dict[str, list[float]] = {}
    for r in reps:
        kinds.setdefault(r["refresh_kind"], []).append(r["refresh"])
    least = {kind: min(runs) for kind, runs in kinds.items()}
    return {"seconds": sum(least[r["refresh_kind"]] for r in reps) / len(reps),
            "spread": max(spread_of(runs) for runs in kinds.values()),
            "runs": [r["refresh"] for r in reps], "kinds": {kind: {"batches": len(runs), "seconds": least[kind]}
                                                           for kind, runs in kinds.items()}}


def _least(values: list[float]) -> dict:
    return {"seconds": min(values), "spread": spread_of(values), "runs": values}
