"""make ui-check's script (reporting.ui_check) against a real MLflow UI and a real headless Chromium, on a tiny store
built here: a parent and 13 children (more than the 10 the chart view shows by default) with the verdict metrics,
tags (the run colours included) and saved view that tasks.evaluation leaves. Skipped where chromium is not installed
(apt-get install -y chromium); a few minutes on a busy 2-core machine, most of it the MLflow UI starting and
rendering."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.colors
import mlflow
import pytest
from matplotlib.figure import Figure
from mlflow import MlflowClient

from reporting import plots, runs_list
from reporting.chromium import chromium_path
from stores import mlflow_ui, tracking

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(chromium_path() is None, reason="no chromium (apt-get install chromium)")]
METHODS = ["iau", "ia", "imu", "neggrad", "ssd", "l1_sparse", "salun", "scrub", "bad_teacher", "amnesiac",
           "retrain_alt", "retrain", "original"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A comparison as the pipeline records it, without running one: the parent with its description, one child
    per method with the view's metrics and its verdict tag, and the saved view with its charts."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    root = tmp_path_factory.mktemp("ui-store")
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    try:
        experiment_id = MlflowClient().create_experiment("ui-check", artifact_location=(root / "a").as_uri())
        parent = tracking.start_run(experiment_id, "unlearn-outliers", {"kind": "test"})
        colors = plots.comparison_colors(METHODS)
        for rank, method in enumerate(METHODS, start=1):
            child = tracking.start_run(experiment_id, method, {"method": method}, parent)
            diffs = {"original": 0.1 - 0.02 * rank, "retrain": 0.05 - 0.01 * rank}
            tracking.log_metrics(child, {"mu_gap": 0.1 * rank, "lira_auc_gap": 0.01 * rank, "unlearn_seconds": rank,
                                         runs_list.VERDICT_RANK: rank,
                                         **{runs_list.verdict_key(name, versus): diff + shift
                                            for versus, diff in diffs.items()
                                            for name, shift in (("diff", 0), ("ci_low", -0.03), ("ci_high", 0.03))}})
            tracking.set_tags(child, {"verdict": "forgets" if rank < 5 else "moves away",
                                      plots.RUN_COLOR_TAG: plots.hex_color(colors[method])})
            tracking.finish(child)
        mlflow_ui.save_children_view(parent, "verdicts-outliers", "verdicts: latest unlearn-outliers",
                                     runs_list.VIEW_COLUMNS, order_by=f"metrics.`{runs_list.VERDICT_RANK}`",
                                     charts=runs_list.view_charts("lira_auc"))
        figure = Figure(figsize=(6.4, 4.8))  # 640 px wide: a plot the artifact viewer shows (reporting.plots')
        figure.add_subplot().scatter([0.1 * r for r in range(13)], [0.01 * r for r in range(13)])
        tracking.log_figure(parent, figure, "plots/mu_vs_ue.png")
        links = mlflow_ui.view_links(parent, "verdicts-outliers")
        tracking.describe_comparison(parent, f"{links}\n\n**unlearn (outliers), 1 seed(s).** Best method: iau.", {},
                                     {}, {})
        tracking.finish(parent)
    finally:
        mlflow.set_tracking_uri(previous)
    return root / "mlflow.db"


def test_the_ui_opens_on_the_runs_shows_the_verdict_columns_and_charts_every_child(store: Path, tmp_path: Path):
    from reporting import ui_check

    status = ui_check.main(["--db", str(store), "--experiment", "ui-check", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "ui_check.json").read_text())
    assert status == 0, report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["chart view shows every child"]["detail"].startswith(f"{len(METHODS)} of {len(METHODS)} runs")
    assert report["facts"]["children"] == len(METHODS) > 10  # beyond the UI's default of 10 shown
    assert report["facts"]["parent_answer_above_the_fold"]
    assert checks["chart view one click from the parent"]["ok"]
    # each run's swatch beside the charts: its method's colour in the plots, 13 different ones (MLflow's own hash of
    # the run ids gives 13 runs fewer colours, some repeated)
    shown = report["facts"]["run_colors"]
    assert shown == {m: matplotlib.colors.to_hex(c) for m, c in plots.comparison_colors(METHODS).items()}, shown
    assert checks["run colours: the plots' colour of each method, distinct"]["ok"]
    # MLflow 3.17.2: a fresh browser's click from the experiments list lands in GenAI mode (docs/tracking.md); if a
    # later MLflow lands on the runs, the docs and `make mlflow-ui`'s notes should say so
    assert "workflowType=genai" in report["facts"]["fresh_list_click_lands_on"]
    assert not (tmp_path / "artifact_lira_roc.png").exists()  # the parent holds no such plot
    for shot in ("experiment_first_page", "verdicts_view", "parent_run", "chart_view", "artifact_mu_vs_ue"):
        assert (tmp_path / f"{shot}.png").stat().st_size > 10_000, shot
