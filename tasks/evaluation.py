"""What the attacks can see, what GR did to the gradients, and the comparison against retraining with its
noise floors: onto the MLflow runs as metrics, tables and plots, and into Prefect as a table artifact."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from iau_core.metrics import (
    ATTACK_STRENGTH,
    ATTACK_STRENGTH_AUC,
    AVG_RANK,
    COLUMNS,
    FLOOR,
    GAPS,
    LIRA_STRENGTH,
    LIRA_STRENGTH_TPR,
    SPEEDUP,
    attack_strengths,
    compare,
    mean_std,
    noise_floors,
    summarize,
    within_floor,
)
from iau_core.training import per_sample_grad_norms
from tasks import plots, report, tracking
from tasks.context import RunContext
from tasks.training import ModelRef, load_attacks, load_base_model
from tasks.unlearning import Outcome

SHOWN = ["mu_gap", "ue_gap", "lira_auc_gap", "unlearn_seconds", "speedup_vs_retrain", "avg_rank", "test_acc",
         "forget_acc", "mia_forget_asr", "lira_auc", "lira_tpr_at_1pct_fpr", "lira_auc_label_matched", "mia_auc"]


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
    tracking.log_metrics(parent_run_id, {"grad_norm_mean": gr.mean(), "grad_norm_p99": np.percentile(gr, 99),
                                         "grad_norm_mean_alpha0": plain.mean(),
                                         "grad_norm_p99_alpha0": np.percentile(plain, 99)})
    tracking.log_figure(parent_run_id, plots.grad_norm_plot(norms), "plots/grad_norms.png")


@task(name="compare-methods", cache_policy=NO_CACHE)
def compare_methods(outcomes: list[Outcome], strengths: list[dict[str, float]], parent_run_id: str,
                    selection: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per seed, every gap to that seed's gold model; over seeds, mean ± std and the noise floors. Gaps and
    floor verdicts go onto each method's run, the tables and plots onto the parent run."""
    tables = per_seed_tables(outcomes)
    summary = summarize([t.drop(columns="seed") for t in tables])
    floors = noise_floors(summary)
    verdicts = within_floor(summary, floors)
    for o in outcomes:
        tracking.log_metrics(o.run_id, {f"{gap}_within_floor": float(verdicts.loc[o.method, gap]) for gap in floors})
    strength = pd.DataFrame(strengths).mean().to_dict()
    tracking.log_metrics(parent_run_id, {**{f"floor_{gap}": v for gap, v in floors.items()}, **strength,
                                         "seeds": len(tables)})
    title = f"unlearn ({selection}), {len(tables)} seed(s)"
    tracking.log_text(parent_run_id, pd.concat(tables).to_csv(float_format="%.5f"), "comparison_by_seed.csv")
    tracking.log_text(parent_run_id, summary.to_csv(float_format="%.5f"), "comparison.csv")
    tracking.log_text(parent_run_id, f"# {title}\n\n{report.summary_markdown(summary, floors, SHOWN)}\n\n"
                      f"{what_attacks_see(strength)}\n", "comparison.md")
    log_plots(outcomes, summary, parent_run_id)
    report.publish_table_artifact([{"method": m, **{c: mean_std(summary.loc[m, f"{c}_mean"], summary.loc[m, f"{c}_std"])
                                                    for c in SHOWN}} for m in summary.index],
                                  key=f"unlearn-{selection}-comparison",
                                  description=f"{title}: mean ± std; gaps are to retrain; retrain_alt's gaps are "
                                              "the noise floor.")
    shown = summary[[c for c in summary.columns if c.removesuffix("_mean").removesuffix("_std") in COLUMNS]]
    return shown, strength


def per_seed_tables(outcomes: list[Outcome]) -> list[pd.DataFrame]:
    """One Table II per seed (gaps to that seed's retrain); each method's gaps also go onto its own run."""
    tables = []
    for seed in sorted({o.seed for o in outcomes}):
        mine = [o for o in outcomes if o.seed == seed]
        table = compare({o.method: o.scores.values for o in mine}, {o.method: o.seconds for o in mine})
        for o in mine:
            tracking.log_metrics(o.run_id, {k: table.loc[o.method, k] for k in (*GAPS, SPEEDUP, AVG_RANK)})
        tables.append(table.assign(seed=seed))
    return tables


def log_plots(outcomes: list[Outcome], summary: pd.DataFrame, parent_run_id: str) -> None:
    """MU against UE over seeds, and LiRA's ROC on D_f for the first seed (the floor model left out: its curve
    is retrain's again)."""
    seeds = sorted({o.seed for o in outcomes})
    tracking.log_figure(parent_run_id, plots.mu_ue_plot(summary, seeds=len(seeds)), "plots/mu_vs_ue.png")
    curves = {o.method: (o.scores.lira_roc.fpr, o.scores.lira_roc.tpr, o.scores.lira_roc.auc)
              for o in outcomes if o.seed == seeds[0] and o.method != FLOOR}
    tracking.log_figure(parent_run_id, plots.roc_plot(curves, f"LiRA on D_f vs held-out records (seed {seeds[0]})"),
                        "plots/lira_roc.png")


def what_attacks_see(strength: dict[str, float]) -> str:
    """One sentence on how much membership the attacks see at all, so no gap is read as more than it is."""
    return (f"What the attacks see on the original model (all of D against held-out records; chance: AUC 0.5, "
            f"TPR 1% at 1% FPR, 50% balanced accuracy): LiRA AUC {strength[LIRA_STRENGTH]:.3f}, TPR at 1% FPR "
            f"{100 * strength[LIRA_STRENGTH_TPR]:.1f}%; shadow attack balanced accuracy "
            f"{strength[ATTACK_STRENGTH]:.1f}%, AUC {strength[ATTACK_STRENGTH_AUC]:.3f}.")
