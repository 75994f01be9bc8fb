"""What the attacks can see, what GR did to the gradients, and the comparison against retraining with its
noise floors: onto the MLflow runs as metrics, tables and plots, and into Prefect as a table artifact."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext

from iau_core.metrics import (
    AVG_RANK,
    COLUMNS,
    GAPS,
    SPEEDUP,
    attack_strengths,
    auc_key,
    noise_floors,
    summarize,
    within_floor,
)
from iau_core.recipe import per_seed_tables
from iau_core.training import per_sample_grad_norms
from iau_core.unlearning import MethodResult
from iau_core.verdicts import Assessment, assess, unchanged_methods
from reporting import plots, runs_list
from reporting import verdicts as verdict_text
from reporting.tables import (
    SHOWN,
    artifact_key,
    comparison_records,
    summary_markdown,
    what_attacks_see,
)
from stores import mlflow_ui, tracking
from stores.artifacts import ModelRef, load_attacks, load_base_model
from stores.project import RunContext

logger = logging.getLogger(__name__)


@task(name="attack-strength", task_run_name="attack-strength-seed{ctx.params.seed}", cache_policy=NO_CACHE)
def measure_attack_strength(ctx: RunContext, base: ModelRef, attack_run_id: str) -> dict[str, float]:
    """What each attack sees on the original model (all of D against held-out data): the yardstick for
    reading ue_gap and lira_auc_gap."""
    bundle = ctx.bundle()
    return attack_strengths(load_base_model(ctx, base), bundle.train, bundle.test,
                            load_attacks(ctx, attack_run_id), ctx.device, ctx.params.seed)


@task(name="gradient-norms", cache_policy=NO_CACHE)
def gradient_norms(ctx: RunContext, base: ModelRef, no_gr: ModelRef, parent_run_id: str) -> None:
    """Per-sample gradient norms on D of the deployed (GR) model against the same recipe with alpha = 0: the
    paper's Fig. 3, and the evidence that GR does what it is for."""
    training = ctx.params.training
    train = ctx.bundle().train
    norms = {f"GR ({training.gr_reading}, alpha={training.gr_alpha})":
             per_sample_grad_norms(load_base_model(ctx, base), train, ctx.device).numpy(),
             "alpha = 0": per_sample_grad_norms(load_base_model(ctx.without_gr(), no_gr), train, ctx.device).numpy()}
    (gr, plain) = norms.values()
    tracking.log_metrics(parent_run_id, runs_list.rounded({
        "grad_norm_mean": gr.mean(), "grad_norm_p99": np.percentile(gr, 99), "grad_norm_mean_alpha0": plain.mean(),
        "grad_norm_p99_alpha0": np.percentile(plain, 99)}))
    tracking.log_figure(parent_run_id, plots.grad_norm_plot(norms), "plots/grad_norms.png")


@task(name="compare-methods", cache_policy=NO_CACHE)
def compare_methods(outcomes: list[MethodResult], strengths: list[dict[str, float]], parent_run_id: str,
                    selection: str, roles: dict[str, int] | None = None,
                    headline: str = "lira") -> tuple[pd.DataFrame, dict[str, float]]:
    """Per seed, every gap to that seed's gold model; over seeds, mean ± std, the noise floors and the paired
    verdicts (iau_core.verdicts). Gaps, floor marks, verdicts and the method's colour in the plots (as MLflow's run
    colour) go onto each method's run; the tables, plots, the answer (as the parent's description and tags) onto the
    parent run. `roles`: the smallest D_f over seeds ('forget') and the validation set's size ('val'), so a table on
    too little data says so. `headline`: the attack (attacks.headline) whose AUC on D_f each verdict is read on."""
    tables = per_seed_tables(outcomes)
    log_gaps(outcomes, tables)
    plain = [t.drop(columns="seed") for t in tables]
    summary = summarize(plain)
    floors = noise_floors(summary)
    kept: dict[str, list[bool]] = {}
    for o in outcomes:
        kept.setdefault(o.method, []).append(o.method in unchanged_methods({o.method: o.choices}))
    roles = roles or {}
    # One seed: the headline's intervals are over the records, from each method's per-record attack scores.
    rocs = {o.method: o.scores.rocs[headline] for o in outcomes
            if o.scores and o.scores.rocs and headline in o.scores.rocs} if len(tables) == 1 else None
    found = assess(plain, summary, floors, kept, roles.get("forget"), roles.get("val"), headline=auc_key(headline),
                   rocs=rocs)
    unchanged = {m for m, v in found.verdicts.items() if v == "no change"}
    verdicts = within_floor(summary, floors)
    for o in outcomes:
        tracking.log_metrics(o.run_id, {f"{gap}_within_floor": float(verdicts.loc[o.method, gap] and
                                                                     o.method not in unchanged) for gap in floors})
    strength = pd.DataFrame(strengths).mean().to_dict()
    tracking.log_metrics(parent_run_id, runs_list.rounded({**{f"floor_{gap}": v for gap, v in floors.items()},
                                                            **strength, "seeds": len(tables)}))
    title = f"unlearn ({selection}), {len(tables)} seed(s)"
    tracking.log_text(parent_run_id, pd.concat(tables).to_csv(float_format="%.5f"), "comparison_by_seed.csv")
    with_verdicts = summary.join(found.wide())
    tracking.log_text(parent_run_id, with_verdicts.to_csv(float_format="%.5f"), "comparison.csv")
    attacks_see = what_attacks_see(strength)
    full = summary_markdown(summary, floors, SHOWN, unchanged)
    tracking.log_text(parent_run_id, verdict_text.comparison_document(title, summary, floors, found, full,
                                                                      attacks_see), "comparison.md")
    by_seed = {int(t["seed"].iloc[0]): t for t in tables}
    view_links = mlflow_ui.view_links(parent_run_id, f"verdicts-{selection}")  # saved by publish_verdict_columns
    # Each method's runs in MLflow's charts in its colour of the plots (no two methods alike, up to 20 of them).
    colors = {m: plots.hex_color(c) for m, c in plots.comparison_colors(summary.index).items()}
    tracking.describe_comparison(
        parent_run_id, f"{view_links}\n\n{verdict_text.parent_description(title, summary, floors, found, attacks_see)}",
        parent_tags(found, summary.index), {"methods_forgetting": float(
            (found.verdicts.drop(index="retrain_alt", errors="ignore") == "forgets").sum())},
        {o.run_id: (verdict_text.child_description(o.method, o.seed, by_seed[o.seed], found),
                    {"verdict": runs_list.verdict_of(found, o.method), plots.RUN_COLOR_TAG: colors[o.method]})
         for o in outcomes if o.run_id})
    publish_verdict_columns(outcomes, summary, found, plain, rocs, parent_run_id, selection)
    for artifact_file, figure in plots.comparison_figures(outcomes, summary, found).items():
        tracking.log_figure(parent_run_id, figure, artifact_file)
    publish_table_artifact(comparison_records(summary, SHOWN, found.verdicts), key=f"unlearn-{selection}-comparison",
                           description=f"{title}: mean ± std; gaps are to retrain; retrain_alt's gaps are "
                                       "the noise floor; verdict on " + found.headline + " with 95% CIs.")
    shown = summary[[c for c in summary.columns if c.removesuffix("_mean").removesuffix("_std") in COLUMNS]]
    return shown.join(found.wide()), strength


def parent_tags(found: Assessment, methods) -> dict[str, str]:
    """What the runs list can show as columns: the best method within every floor and each method's verdict (the
    references' say what they are)."""
    return {"best_method": found.best or "none", "verdict_metric": found.headline, "verdict_basis": found.basis,
            **{f"verdict.{m}": runs_list.verdict_of(found, m) for m in methods}}


def publish_verdict_columns(outcomes: list[MethodResult], summary: pd.DataFrame, found: Assessment,
                            tables: list[pd.DataFrame],
                            rocs: dict | None, parent_run_id: str, selection: str) -> None:
    """Each method's headline differences and CI ends (and rank) as metrics of its runs, the same as a table on the
    parent (mlflow.log_table), and the saved view `verdicts-<selection>` of the runs list: this comparison's method
    runs with those columns, ranked first (docs/tracking.md)."""
    numbers = runs_list.verdict_metrics(found, tables, rocs)
    for o in outcomes:
        tracking.log_metrics(o.run_id, numbers.get(o.method, {}))
    tracking.log_table(parent_run_id, runs_list.summary_table(summary, found, numbers), "verdicts_table.json")
    mlflow_ui.save_children_view(parent_run_id, f"verdicts-{selection}", f"verdicts: latest unlearn-{selection}",
                                 runs_list.VIEW_COLUMNS, order_by=f"metrics.`{runs_list.VERDICT_RANK}`",
                                 charts=runs_list.view_charts(found.headline))


def log_gaps(outcomes: list[MethodResult], tables: list[pd.DataFrame]) -> None:
    """Each method's gaps to its seed's gold model, onto its own run."""
    by_seed = {int(table["seed"].iloc[0]): table for table in tables}
    for o in outcomes:
        table = by_seed[o.seed]
        tracking.log_metrics(o.run_id, runs_list.rounded({k: table.loc[o.method, k]
                                                          for k in (*GAPS, SPEEDUP, AVG_RANK)}))


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (JSON has no int64); NaN becomes null in Prefect's own sanitising."""
    return value.item() if hasattr(value, "item") else value


def publish_table_artifact(summary_records: list[dict], key: str, description: str) -> None:
    """Publish the rows as a Prefect table artifact on the current flow or task run, under `key` made valid
    (artifact_key).

    Outside a run it does nothing but log: Prefect 3.8 would still create an orphan artifact there (with a
    FutureWarning that this is deprecated), starting a temporary API server when none is configured."""
    clean_key = artifact_key(key)
    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        logger.info("not in a Prefect flow or task run: table artifact %r not published", clean_key)
        return
    table = [{name: _plain(value) for name, value in record.items()} for record in summary_records]
    create_table_artifact(table=table, key=clean_key, description=description)
