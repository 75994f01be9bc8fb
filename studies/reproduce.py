"""Regenerate docs/reproduction.md: the paper's tables and figures measured here, each claim with a verdict.

    .venv/bin/python -m studies.reproduce                 # the leaking setting, 5 seeds (long), then the doc
    .venv/bin/python -m studies.reproduce --setting small --seeds 0 1 2   # the earlier LeNet5 setting, D = 1,000
    .venv/bin/python -m studies.reproduce --render-only   # rewrite the doc from docs/reproduction_data.json

Fashion-MNIST, CPU, over `--seeds` (default 0 1 2 3 4), with the overrides of a setting (SETTINGS below: by default
studies/leaking.yaml, where the original model memorizes D; `--set KEY=VALUE` adds more) over params.yaml. One pass
measures everything:
- per seed, the deployed (GR) model, the same recipe without GR and with GR's per-sample reading, each trained
  until early stopping: Table VI (epochs) and Fig. 3 (per-sample gradient norms on D) come from these;
- per seed and selection (random 5%: Table II; isolation-forest outliers: Table V), every method in the
  registry on the deployed model (ia_gc on the model without GR), scored against retrain and retrain_alt;
  Fig. 2's ablation (ia, ia_gc, iau) is read from the same runs.
The raw numbers go to docs/reproduction_data.json, the figures to docs/*.png, and the doc, the figures and the
raw numbers onto one MLflow run (tag kind = reproduction). Nothing here is tuned on the outcome: every method
runs with params.yaml's values and the same stop rule.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from iau_core.config import METHOD_NAMES, Params, deep_merge, load_params
from iau_core.config.cli_args import add_params_arguments, params_from
from iau_core.data import load_bundle
from iau_core.recipe import LocalSteps, recipe_params, run_recipe, train_original
from iau_core.sources import materialized_root
from iau_core.training import per_sample_grad_norms, resolve_device
from iau_core.verdicts import unchanged_methods
from studies import PROJECT_ROOT
from studies.reproduce_report import PER_SAMPLE_MAX_EPOCHS, SELECTIONS, figures, render

DOCS = PROJECT_ROOT / "docs"
RAW = DOCS / "reproduction_data.json"
LEAKING = Path(__file__).with_name("leaking.yaml")
# The earlier setting: smaller than params.yaml's default data so that 3 seeds x 2 selections x every method fit
# on 2 shared CPU cores; trained to early stopping. Its original model barely leaks (LiRA AUC about 0.55 on D), so
# no forgetting claim could be judged on it: kept to compare with, the leaking setting is the default.
SMALL = {
    "data": {"train_size": 1000, "val_size": 500, "test_size": 1000, "shadow_pool_size": 2000},
    "training": {"lr": 0.001, "max_epochs": 30, "patience": 5},  # lr: the rate it was measured with
    "mia": {"num_shadow": 3, "holdout": 0.0}, "lira": {"num_reference": 3},
    "unlearning": {"methods": list(METHOD_NAMES)},
}
EVERY_METHOD = {"unlearning": {"methods": list(METHOD_NAMES)}}  # every setting compares every method in the registry
SETTINGS = {"leaking": lambda: deep_merge(yaml.safe_load(LEAKING.read_text()), EVERY_METHOD), "small": lambda: SMALL}


def measure(params: Params, seeds: list[int], log=print, save=lambda raw: None) -> dict:
    """Every number the doc shows, per seed, as plain JSON-able values; `save` receives them after each seed,
    so a run cut short still leaves every finished seed. The comparisons are the recipe loop's
    (iau_core.recipe.run_recipe), run once per seed and selection on the same base models."""
    root = materialized_root(params.data, PROJECT_ROOT)
    device = resolve_device(params.device)
    bundle = load_bundle(params.data, root)
    start = time.perf_counter()
    steps = LocalSteps(params, bundle, device, log)
    steps.attacks()
    log(f"reference models: {time.perf_counter() - start:.0f}s")
    raw: dict = {"seeds": seeds, "params": json.loads(params.model_dump_json()), "training": [], "norms": [],
                 "measured_on": time.strftime("%Y-%m-%d"),
                 "tables": {s: [] for s in SELECTIONS}}
    for seed in seeds:
        run = params.for_seed(seed)
        # the deployed model first; the loop's two base models are kept for both selections
        trained = {"GR (batch)": ("deployed", run), "no GR (alpha = 0)": ("no_gr", recipe_params(run, "no_gr")),
                   "GR (per_sample)": (None, _per_sample(run))}
        for name, (recipe, recipe_run) in trained.items():
            model, report = train_original(recipe_run, bundle, device)
            if recipe:
                steps.models[(seed, recipe)] = model
            raw["training"].append({"seed": seed, "recipe": name, "epochs_run": report.epochs_run,
                                    "best_epoch": report.best_epoch, "stopped_early": report.stopped_early,
                                    "best_val_acc": report.best_val_acc, "seconds": report.seconds})
            norms = per_sample_grad_norms(model, bundle.train, device).numpy()
            raw["norms"].append({"seed": seed, "recipe": name, "mean": float(norms.mean()),
                                 "p99": float(np.percentile(norms, 99)), "max": float(norms.max()),
                                 **({"values": norms.round(5).tolist()} if seed == seeds[0] else {})})
            log(f"seed {seed}: {name} {report.epochs_run} epochs ({report.seconds:.0f}s), mean norm {norms.mean():.3f}")
        for selection in SELECTIONS:
            chosen = run.model_copy(update={"selection": run.selection.model_copy(update={"strategy": selection})})
            comparison = run_recipe(chosen, steps)
            table = comparison.tables()[0].drop(columns="seed")
            raw["tables"][selection].append(table.reset_index().to_dict(orient="records"))
            raw.setdefault("kept", {}).setdefault(selection, []).append(
                sorted(unchanged_methods({r.method: r.choices for r in comparison.results})))
            if selection == SELECTIONS[0]:
                raw.setdefault("strengths", []).append(comparison.strengths[0])
            log(f"seed {seed} {selection}: {len(comparison.forget_sets[seed])} forgotten, "
                + ", ".join(f"{r.method} {r.seconds:.1f}s" for r in comparison.results))
        raw["seconds"] = time.perf_counter() - start
        raw["seeds_done"] = raw.get("seeds_done", []) + [seed]
        save(raw)
    return raw


def _per_sample(params: Params) -> Params:
    capped = min(params.training.max_epochs, PER_SAMPLE_MAX_EPOCHS)
    return params.model_copy(update={"training": params.training.model_copy(
        update={"gr_reading": "per_sample", "max_epochs": capped})})


def publish(raw: dict, doc: str) -> str:
    """Figures into docs/ and, with the doc and the raw numbers, onto one MLflow run."""
    from stores import tracking

    DOCS.mkdir(exist_ok=True)
    (DOCS / "reproduction.md").write_text(doc)
    figs = figures(raw)
    for name, fig in figs.items():
        fig.savefig(DOCS / name, dpi=110)
    params = load_params(PROJECT_ROOT / "params.yaml")
    experiment = tracking.configure(PROJECT_ROOT, params.tracking.experiment)
    data_version = yaml.safe_load((PROJECT_ROOT / "data.dvc").read_text())["outs"][0]["md5"]
    tags = {"kind": "reproduction", "data_version": data_version, "git_commit": tracking.git_commit(PROJECT_ROOT)}
    with tracking.run(experiment, "reproduction", tags) as run_id:
        tracking.log_text(run_id, doc, "reproduction.md")
        tracking.log_text(run_id, json.dumps(raw), "reproduction_data.json")
        for name, fig in figs.items():
            tracking.log_figure(run_id, fig, f"plots/{name}")
        tracking.log_metrics(run_id, {"seconds": raw["seconds"], "seeds": len(raw["seeds"])})
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="leaking",
                        help="leaking: studies/leaking.yaml (the original memorizes D); small: the earlier D = 1,000")
    add_params_arguments(parser, params_file=False)
    parser.add_argument("--render-only", action="store_true", help="rewrite the doc from " + str(RAW.name))
    args = parser.parse_args()
    if args.render_only:
        raw = json.loads(RAW.read_text())
        raw["seeds"] = raw.get("seeds_done", raw["seeds"])  # a run cut short: the seeds that finished
    else:
        params = params_from(parser, args, PROJECT_ROOT / "params.yaml", base=SETTINGS[args.setting](),
                             extra={"seeds": args.seeds})
        DOCS.mkdir(exist_ok=True)
        raw = measure(params, args.seeds, lambda line: print(line, flush=True),
                      lambda r: RAW.write_text(json.dumps({**r, "setting": args.setting})))
        raw["setting"] = args.setting
    # a re-render names the command that measured the data (its setting and seeds), not itself
    setting, seeds = (raw.get("setting", "leaking"), raw["seeds"]) if args.render_only else (args.setting, args.seeds)
    command = f".venv/bin/python -m studies.reproduce --setting {setting} --seeds {' '.join(map(str, seeds))}"
    run_id = publish(raw, render(raw, command))
    print(f"wrote {DOCS / 'reproduction.md'} and its figures; MLflow run {run_id}")


if __name__ == "__main__":
    main()
