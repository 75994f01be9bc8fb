"""The `unlearn` flow: DVC data -> base model (GR) -> forget set -> attack -> every method -> comparison.

    python -m flows.unlearn --selection outliers        # what `make run` does
    prefect deployment run unlearn/outliers            # through a server and a worker (prefect.yaml)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from iau_core.config import Strategy, deep_merge, load_params
from iau_core.experiment import methods_to_run
from tasks import tracking
from tasks.context import PROJECT_ROOT, RunContext
from tasks.data import ensure_data_task
from tasks.evaluation import compare_methods, measure_attack_strength
from tasks.selection import forget_set
from tasks.training import base_model, shadow_attack
from tasks.unlearning import unlearn_with


@flow(name="unlearn")
def unlearn(selection: Strategy = "outliers", params_file: str = "params.yaml",
            overrides: dict | None = None) -> dict:
    """Forget a selected part of the training set with every configured method and compare each with
    retraining from scratch. Returns the parent MLflow run id and the comparison table (as records)."""
    params_path = Path(params_file) if Path(params_file).is_absolute() else PROJECT_ROOT / params_file
    params = load_params(params_path, deep_merge(overrides or {}, {"selection": {"strategy": selection}}))
    data_version = ensure_data_task(str(PROJECT_ROOT))
    ctx = RunContext(params, data_version, tracking.configure(PROJECT_ROOT, params.tracking.experiment))
    lineage = {"flow": "unlearn", "selection": selection, "data_version": data_version,
               "git_commit": tracking.git_commit(PROJECT_ROOT), "prefect_flow_run_id": str(flow_run.id)}
    with tracking.run(ctx.experiment_id, f"unlearn-{selection}", lineage) as parent:
        tracking.log_params(parent, tracking.flatten(params))
        base = base_model(ctx)
        tracking.set_tags(parent, {"base_model": base.uri})
        forget_ids = forget_set(ctx, parent)
        attack = shadow_attack(ctx)
        measure_attack_strength(ctx, base, attack, parent)
        outcomes = [unlearn_with(m, ctx, base, attack, forget_ids, parent) for m in methods_to_run(params)]
        table = compare_methods(outcomes, parent)
    get_run_logger().info("comparison (MLflow parent run %s):\n%s", parent, table.round(3).to_string())
    return {"parent_run_id": parent, "table": table.reset_index().to_dict(orient="records")}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the unlearn flow once, in this process.")
    parser.add_argument("--selection", choices=get_args(Strategy), default="outliers")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    result = unlearn(selection=args.selection, params_file=args.params)
    print(report(result))


def report(result: dict) -> str:
    import pandas as pd

    table = pd.DataFrame(result["table"]).set_index("method")
    cols = ["mu_gap", "unlearn_seconds", "ue_gap", "avg_rank", "speedup_vs_retrain", "test_acc", "forget_acc",
            "mia_forget_asr", "mia_auc"]
    uri = tracking.tracking_uri(PROJECT_ROOT)
    return (f"\n{table[cols].round(3).to_string()}\n\n"
            f"MLflow parent run {result['parent_run_id']} in {uri}\n"
            f"Browse: mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)\n")


if __name__ == "__main__":
    main()
