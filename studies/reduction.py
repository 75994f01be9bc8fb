"""Eq. 8 with sums (as written) or with means (the public code)? Re-run only the IAU step, both ways, on the
models a finished `unlearn` flow run left in MLflow (its base model, forget set, retrained gold model and the
attacker's reference statistics, for every seed), and print the gaps to retrain as mean ± std over seeds.

    make run SEEDS="0 1 2" && .venv/bin/python -m studies.reduction --selection outliers

Both reductions choose eta with the same per-run rule (params.yaml's unlearning.eta_rule). The gaps are read on
the test set and against retrain: this chooses a *default*, once, as a study; no run ever tunes on them.
"""

from __future__ import annotations

import argparse
import tempfile

import pandas as pd
from mlflow import MlflowClient

from iau_core.config import load_params
from iau_core.metrics import (
    FORGET_ACC,
    GAPS,
    LIRA_AUC,
    LIRA_AUC_GAP,
    MU_GAP,
    TEST_ACC,
    UE_GAP,
    UNLEARN_SECONDS,
    compare,
)
from iau_core.recipe import unlearn_and_score
from stores import tracking
from stores.artifacts import ModelRef, load_attacks, load_base_model
from stores.project import RunContext
from studies import PROJECT_ROOT

SHOWN = [MU_GAP, UE_GAP, LIRA_AUC_GAP, FORGET_ACC, LIRA_AUC, UNLEARN_SECONDS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selection", default="outliers")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(PROJECT_ROOT / args.params, {"selection": {"strategy": args.selection}})
    experiment = tracking.configure(PROJECT_ROOT, params.tracking.experiment)
    client = MlflowClient()
    parent = client.search_runs([experiment], f"tags.flow = 'unlearn' and tags.selection = '{args.selection}' and "
                                "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])[0]
    data_version = parent.data.tags["data_version"]
    attack_run = client.search_runs([experiment], "tags.kind = 'reference-attack' and attributes.status = "
                                    "'FINISHED'", order_by=["attributes.start_time DESC"])[0].info.run_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = pd.read_csv(client.download_artifacts(parent.info.run_id, "forget_set.csv", tmp))
    rows = []
    for seed in sorted(manifest["seed"].unique()):
        ctx = RunContext(params.for_seed(int(seed)), data_version, experiment)
        bundle, attacks = ctx.bundle(), load_attacks(ctx, attack_run)
        gold_run = next(r for r in children if r.data.tags["method"] == "retrain" and r.data.tags["seed"] == str(seed))
        name, version = gold_run.data.tags["base_model"].removeprefix("models:/").split("/")
        base = load_base_model(ctx, ModelRef(client.get_model_version(name, version).run_id, ""))
        gold = load_base_model(ctx, ModelRef(gold_run.info.run_id, ""))
        forget_ids = manifest.loc[manifest["seed"] == seed, "sample_id"].to_numpy()
        gold_scores = unlearn_and_score("original", gold, forget_ids, ctx.params, bundle, attacks, ctx.device)
        for reduction in ("sum", "mean"):
            run_params = ctx.params.model_copy(update={"unlearning": ctx.params.unlearning.model_copy(
                update={"reduction": reduction})})
            out = unlearn_and_score("iau", base, forget_ids, run_params, bundle, attacks, ctx.device)
            table = compare({"retrain": gold_scores.scores.values, "iau": out.scores.values},
                            {"retrain": 1.0, "iau": out.seconds})
            rows.append({"seed": seed, "reduction": reduction, "eta": out.choices["eta_chosen"],
                         "rule": out.choices.get("eta_rule.reason", ""), **table.loc["iau", SHOWN].to_dict()})
    frame = pd.DataFrame(rows)
    print(f"parent run {parent.info.run_id} ({args.selection}, {frame['seed'].nunique()} seeds; gaps "
          f"{', '.join(GAPS)} are to retrain, {TEST_ACC} on test)\n")
    print("| reduction | " + " | ".join(["eta", *SHOWN]) + " |")
    print("| --- " * (len(SHOWN) + 2) + "|")
    for reduction, group in frame.groupby("reduction", sort=False):
        cells = [f"{group['eta'].mean():.3g}"] + [
            f"{group[c].mean():.3f} ± {group[c].std(ddof=1):.3f}" if len(group) > 1 else f"{group[c].mean():.3f}"
            for c in SHOWN]
        print(f"| {reduction} | " + " | ".join(cells) + " |")
    print("\nrules that ended each scan: " + "; ".join(sorted(set(frame["rule"]))))
    print(frame.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
