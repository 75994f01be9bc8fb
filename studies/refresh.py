"""The nightly cache's refresh (iau_core.unlearning.refresh) against the exact pass, over consecutive batches.

For each seed: the deployed model (params.yaml's recipe) on Fashion-MNIST at |D| = 8,000 as benchmarks/workload.py
builds it, then the same sequence of nightly batches (random deletions) run as chains, each an IAU step from the
cache its own previous batch left:
- exact: the cache recomputed over all of D after every batch (today's refresh);
- subtract: the cache minus D_f's gradient, the model's move ignored (a lower baseline, never a mode);
- difference / first_order at a sample size, without fallback (max_drift and full_every out of reach), so the
  error grows unchecked; and the default settings of params.yaml, fallback included.

After n refreshes (n = 1, 5, 20) each approximate chain reports, against the exact gradient at its own model: the
cosine and the relative norm error of its cache and the estimated drift; the next step taken from that cache
against the step from the exact gradient at the same model (the IAU direction's relative error, and the relative
distance of the parameters after each takes the eta the rule chooses for it: same eta or not); and its
model after that step against the exact chain's after as many batches (test accuracy, the loss attack's AUC on
every record forgotten so far against the test set, the distance of the parameters). Seconds are on a shared
machine: read them as relative costs only.

    IAU_THREADS=1 .venv/bin/python -m studies.refresh [--seeds 0 1 2] [--batches 21] [--requests 100]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.workload import fashion_mnist_bundle
from iau_core.attacks.loss import loss_attack
from iau_core.config import GradientRefreshParams, Params, load_params
from iau_core.recipe import model_builder, train_original
from iau_core.runtime import prepare_process
from iau_core.training import accuracy, resolve_device
from iau_core.unlearning import UnlearningTask
from iau_core.unlearning.gradients import (
    SummedGradient,
    iau_direction,
    ids_sha256,
    summed_gradient,
    summed_loss_and_gradient,
)
from iau_core.unlearning.iau import iau
from iau_core.unlearning.refresh import refresh_summed_gradient
from studies import PROJECT_ROOT

CHECKPOINTS = (1, 5, 20)
UNBOUNDED = {"max_drift": 1e9, "full_every": 10_000}


def chains(default: GradientRefreshParams) -> dict[str, GradientRefreshParams | None]:
    """Chain name -> refresh settings (None: exact or subtract, handled by name)."""
    return {"exact": None, "subtract": None,
            "difference@2048": GradientRefreshParams(mode="difference", sample=2048, **UNBOUNDED),
            "difference@4096": GradientRefreshParams(mode="difference", sample=4096, **UNBOUNDED),
            "first_order@1024": GradientRefreshParams(mode="first_order", sample=1024, **UNBOUNDED),
            f"default ({default.mode}@{default.sample}, max_drift {default.max_drift}, full_every "
            f"{default.full_every})": default}


def flat(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


def params_of(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def step_from(model: nn.Module, cache: SummedGradient, forget, retain, val, params: Params, bundle,
              device) -> tuple[nn.Module, float]:
    task = UnlearningTask(model=model, retain=retain, forget=forget, val=val, build_model=model_builder(params, bundle),
                          training=params.training, unlearning=params.unlearning, device=device, seed=params.seed,
                          summed_gradient=cache)
    out = iau(task)
    return out.model.eval(), float(out.choices["eta_chosen"])


def run_chain(name: str, settings: GradientRefreshParams | None, champion: nn.Module, start: SummedGradient,
              batches: list[np.ndarray], params: Params, bundle, device, exact_models: dict | None) -> dict:
    """One chain of batches; returns its per-checkpoint rows and its refresh records."""
    model, cache, train = copy.deepcopy(champion), start, bundle.train
    theta0, forgotten, rows, records = params_of(champion), [], {}, []
    bs = params.unlearning.batch_size
    for n, ids in enumerate(batches):  # n: refreshes made before this step
        forget, retain = train.partition(ids)
        forgotten.append(forget)
        new, eta = step_from(model, cache, forget, retain, bundle.val, params, bundle, device)
        if n in CHECKPOINTS:
            rows[n] = checkpoint(name, n, model, new, eta, cache, forget, retain, forgotten, theta0, params,
                                 bundle, device, exact_models)
        if name == "exact" and exact_models is not None:
            exact_models[n] = params_of(new)
        if n == len(batches) - 1:
            break
        start_s = time.perf_counter()
        if name == "exact":
            cache = summed_gradient(new, retain, bs, bundle.val)
            records.append({"mode": "exact", "seconds": time.perf_counter() - start_s, "fell_back": False})
        elif name == "subtract":
            f_sum = summed_loss_and_gradient(model.eval(), forget, bs)[1]
            cache = SummedGradient([c - f for c, f in zip(cache.grads, f_sum, strict=True)], len(retain),
                                   ids_sha256(retain))
            records.append({"mode": "subtract", "seconds": time.perf_counter() - start_s, "fell_back": False})
        else:
            cache, record = refresh_summed_gradient(cache, model, new, forget, retain, bundle.val, settings, bs,
                                                    seed=params.seed * 100_003 + n)
            records.append({"mode": record.mode, "seconds": record.seconds, "fell_back": record.fell_back,
                            "drift": record.drift, "reason": record.reason})
        model, train = new, retain
    return {"rows": rows, "refreshes": records}


def checkpoint(name, n, model, new, eta, cache, forget, retain, forgotten, theta0, params, bundle, device,
               exact_models) -> dict:
    """The chain's numbers after n refreshes (see the module docstring)."""
    bs = params.unlearning.batch_size
    exact = summed_gradient(model, _with(retain, forget), bs, bundle.val)  # the exact cache at this model and D
    a, e = flat(cache.grads), flat(exact.grads)
    by_exact, eta_exact = step_from(model, exact, forget, retain, bundle.val, params, bundle, device)
    reduction = params.unlearning.reduction
    direction, direction_exact = (flat(iau_direction(model.eval(), retain, forget, bs, reduction, c))
                                  for c in (cache, exact))
    theta, stepped, reference = params_of(model), params_of(new), params_of(by_exact)
    members = forgotten[0]
    for part in forgotten[1:]:
        members = _with(members, part)
    row = {"chain": name, "refreshes": n,
           "cosine": torch.nn.functional.cosine_similarity(a, e, dim=0).item(),
           "relative_error": ((a - e).norm() / e.norm()).item(), "norm_ratio": (a.norm() / e.norm()).item(),
           "estimated_drift": cache.drift,
           "direction_relative_error": ((direction - direction_exact).norm() / direction_exact.norm()).item(),
           "step_relative_distance": ((stepped - reference).norm() / max((reference - theta).norm(), 1e-12)).item(),
           "same_eta": eta == eta_exact, "eta": eta, "eta_exact_cache": eta_exact,
           "test_acc": accuracy(new, bundle.test, device),
           "attack_auc": loss_attack(new, members, bundle.test, device).auc}
    if exact_models is not None and n in exact_models and name != "exact":
        row["distance_to_exact_chain"] = ((stepped - exact_models[n]).norm() /
                                          max((exact_models[n] - theta0).norm(), 1e-12)).item()
    return row


def _with(a, b):
    from iau_core.data import Split

    return Split(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), torch.cat([a.ids, b.ids]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=21, help="steps per chain (refreshes: one fewer)")
    parser.add_argument("--requests", type=int, default=100, help="deletions per batch")
    parser.add_argument("--train-size", type=int, default=8_000)
    parser.add_argument("--out", default="reports/refresh")
    args = parser.parse_args()
    base = load_params(PROJECT_ROOT / "params.yaml")
    prepare_process(base.threads)
    device = resolve_device(base.device)
    bundle = fashion_mnist_bundle(args.train_size, 2_000, 2_000, 1_000, device)
    results, started = [], time.perf_counter()
    for seed in args.seeds:
        params = base.for_seed(seed)
        champion, report = train_original(params, bundle, device)
        champion.eval()
        start = summed_gradient(champion, bundle.train, params.unlearning.batch_size, bundle.val)
        order = np.random.default_rng(seed).permutation(bundle.train.ids.cpu().numpy())
        batches = [order[i * args.requests:(i + 1) * args.requests] for i in range(args.batches)]
        exact_models: dict = {}
        for name, settings in chains(params.nightly.gradient_refresh).items():
            chain = run_chain(name, settings, champion, start, batches, params, bundle, device, exact_models)
            results.append({"seed": seed, "chain": name, **chain})
            print(f"seed {seed} {name}: " + "; ".join(
                f"n={r['refreshes']} cos {r['cosine']:.4f} rel {r['relative_error']:.3f} drift "
                f"{r['estimated_drift']:.3f} acc {r['test_acc']:.2f} auc {r['attack_auc']:.3f}"
                for r in chain["rows"].values()), flush=True)
        write(args, base, results, started)  # after every seed: a cut-short run still leaves its seeds


def write(args: argparse.Namespace, base: Params, results: list[dict], started: float) -> None:
    meta = {"commit": git_commit(), "command": " ".join(["python -m studies.refresh", *sys.argv[1:]]),
            "dataset": f"fashion_mnist, |D| = {args.train_size} (benchmarks/workload.py), val 2,000, test 2,000",
            "requests_per_batch": args.requests, "steps_per_chain": args.batches,
            "seeds": sorted({r["seed"] for r in results}),
            "model": base.model.name, "threads": torch.get_num_threads(),
            "minutes": (time.perf_counter() - started) / 60}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    from studies.refresh_report import markdown

    Path(f"{args.out}.md").write_text(markdown(meta, results))
    print(f"wrote {args.out}.md and .json")


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        return head + (" (uncommitted changes in the tree)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()

