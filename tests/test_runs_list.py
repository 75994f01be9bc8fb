"""The comparison as the MLflow runs list shows it (reporting.runs_list, stores.mlflow_ui, tasks.evaluation): every
method's run, the references' included, carries its verdict and its colour in the plots (MLflow's run colour) as
tags and its headline paired differences with their 95% CI ends as metrics; the parent a rounded summary table
(mlflow.log_table) and a saved view of those columns; a method's run ends at the end of its own work."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import matplotlib.colors
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from iau_core.attacks.roc import roc
from iau_core.metrics import CALIBRATED, Scores, auc_key, matched, tpr_0_1pct_key, tpr_key
from iau_core.unlearning import MethodResult
from reporting import plots, runs_list
from stores import mlflow_ui, tracking
from tasks.evaluation import compare_methods

# method -> (shift of D_f's attack scores: how member-like D_f still looks, test accuracy, seconds)
METHODS = {"original": (1.0, 88.0, 0.0), "retrain": (0.0, 87.5, 40.0), "retrain_alt": (0.05, 87.6, 41.0),
           "iau": (0.1, 87.7, 0.5), "finetune": (1.0, 88.0, 3.0)}
VERDICT_KEYS = {f"verdict_{name}_{versus}" for name in ("diff", "ci_low", "ci_high")
                for versus in ("original", "retrain")}


@pytest.fixture(scope="module")
def experiment_id(tmp_path_factory: pytest.TempPathFactory):
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    root = tmp_path_factory.mktemp("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    yield MlflowClient().create_experiment("runs-list", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_tracking_uri(previous)


def outcome(method: str, seed: int, run_id: str | None) -> MethodResult:
    """One method's scores on one seed: the same D_f and held-out records for every method (paired), D_f's attack
    scores shifted by how much the method still remembers; finetune returned the deployed model (0 epochs kept)."""
    shift, test_acc, seconds = METHODS[method]
    rng = np.random.default_rng(seed)
    base, nonmembers = rng.normal(0, 1, 80), rng.normal(0, 1, 400)
    noise = np.random.default_rng(100 * seed + list(METHODS).index(method)).normal(0, 0.02, 80)
    found = roc(base + shift + noise, nonmembers)
    values = {"test_acc": test_acc + 0.1 * seed, "retain_acc": 95.0, "forget_acc": 90.0 + 5 * shift,
              "mia_forget_asr": 55.0 + 10 * shift + seed, "shadow_auc": 0.5 + 0.1 * shift, "mia_auc": 0.5 + 0.1 * shift,
              "tpr_at_1pct_fpr": 0.01}
    for name in CALIBRATED:
        for key, value in ((auc_key(name), found.auc), (tpr_key(name), found.tpr_at_1pct_fpr),
                           (tpr_0_1pct_key(name), found.tpr_at_0_1pct_fpr)):
            values |= {key: value, matched(key): value}
    choices = {"epochs_kept": 0} if method == "finetune" else {"seed": seed}
    return MethodResult(method, seed, seconds, choices, None, Scores(values, found, {n: found for n in CALIBRATED}),
                        run_id)


def compared(experiment_id: str, seeds: list[int], selection: str) -> tuple[str, dict[str, str]]:
    """compare_methods on fresh runs (outside Prefect: its table artifact is skipped); the parent's id and each
    method's run id (the first seed's)."""
    parent = tracking.start_run(experiment_id, f"unlearn-{selection}", {"kind": "test"})
    outcomes, runs = [], {}
    for seed in seeds:
        for method in METHODS:
            run_id = tracking.start_run(experiment_id, method, {"method": method, "seed": str(seed)}, parent)
            runs.setdefault(method, run_id)
            outcomes.append(outcome(method, seed, run_id))
    strengths = [{"attack_strength": 60.0, "attack_strength_auc": 0.6,
                  **{f"{n}_strength": 0.6 for n in CALIBRATED}, **{f"{n}_strength_tpr_at_1pct_fpr": 0.05
                                                                   for n in CALIBRATED}}] * len(seeds)
    compare_methods.fn(outcomes, strengths, parent, selection, roles={"forget": 80, "val": 300})
    return parent, runs


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2]])
def test_every_method_run_carries_its_verdict_and_headline_differences(experiment_id: str, seeds: list[int]):
    selection = f"s{len(seeds)}"
    parent, runs = compared(experiment_id, seeds, selection)
    client = MlflowClient()
    parent_tags = client.get_run(parent).data.tags
    for method, run_id in runs.items():
        data = client.get_run(run_id).data
        assert data.tags["verdict"] == parent_tags[f"verdict.{method}"], method  # the references included
        assert {"verdict_diff_original", "verdict_diff_retrain"} <= set(data.metrics), method
        if method not in ("original", "retrain"):
            assert VERDICT_KEYS <= set(data.metrics), method  # a CI on each side: over records or over seeds
            low, diff, high = (data.metrics[f"verdict_{k}_original"] for k in ("ci_low", "diff", "ci_high"))
            assert low <= diff <= high
    original, gold = (client.get_run(runs[m]).data for m in ("original", "retrain"))
    assert original.tags["verdict"] == "reference: doing nothing" and gold.tags["verdict"] == "reference: gold model"
    assert original.metrics["verdict_diff_original"] == 0 and gold.metrics["verdict_diff_retrain"] == 0
    # original's distance to retrain is retrain's to original, mirrored; with one seed over the records too
    assert original.metrics["verdict_diff_retrain"] == pytest.approx(-gold.metrics["verdict_diff_original"])
    assert original.metrics["verdict_ci_low_retrain"] == pytest.approx(-gold.metrics["verdict_ci_high_original"])
    assert gold.metrics["verdict_diff_original"] < 0  # retraining moved D_f's AUC down
    assert client.get_run(runs["finetune"]).data.tags["verdict"] == "no change"
    assert client.get_run(runs["iau"]).data.tags["verdict"] == "forgets"
    assert client.get_run(runs["iau"]).data.metrics["verdict_rank"] == 1


def test_each_method_run_has_its_plot_colour_as_mlflow_run_colour_and_no_two_methods_share_one(experiment_id: str):
    parent, _ = compared(experiment_id, [0, 1], "colours")
    client = MlflowClient()
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    order = pd.read_csv(io.StringIO(tracking.read_text(parent, "comparison.csv")), index_col=0).index
    expected = plots.comparison_colors(order)  # what mu_vs_ue.png and lira_roc.png draw each method in
    by_method: dict[str, set[str]] = {}
    for run in children:
        color = run.data.tags[plots.RUN_COLOR_TAG]
        assert re.fullmatch(r"#[0-9a-f]{6}", color), color  # the form MLflow's colour picker writes
        assert color == matplotlib.colors.to_hex(expected[run.data.tags["method"]]), run.data.tags["method"]
        by_method.setdefault(run.data.tags["method"], set()).add(color)
    assert len(children) == 2 * len(METHODS) and set(by_method) == set(METHODS)  # both seeds, references included
    assert all(len(colors) == 1 for colors in by_method.values())  # a method's seeds alike
    assert len({c for colors in by_method.values() for c in colors}) == len(METHODS)  # methods distinct
    assert client.get_run(parent).data.tags.get(plots.RUN_COLOR_TAG) is None  # the parent keeps MLflow's own


def test_the_parent_holds_a_rounded_summary_table_and_a_saved_view(experiment_id: str):
    parent, runs = compared(experiment_id, [0], "outliers")
    client = MlflowClient()
    table = json.loads(Path(client.download_artifacts(parent, "verdicts_table.json")).read_text())
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    assert list(frame.method[:2]) == ["iau", "finetune"] and set(frame.method) == set(METHODS)
    assert frame.set_index("method").loc["original", "verdict"] == "reference: doing nothing"
    numbers = frame.select_dtypes("number").to_numpy().ravel()
    numbers = numbers[np.isfinite(numbers)]
    assert len(numbers) > 20 and np.allclose(numbers, np.round(numbers, 3))  # no float noise like 0.99999904

    view = json.loads(client.get_experiment(experiment_id).tags["mlflow.sharedViewState.verdicts-outliers"])
    state = json.loads(view["state"])
    assert view["name"] == "verdicts: latest unlearn-outliers" and isinstance(view["createdAt"], int)
    assert state["selectedColumns"][:2] == ["attributes.`Models`", "metrics.`verdict_rank`"]
    assert state["orderByKey"] == "metrics.`verdict_rank`"
    # its chart view: every run (the UI shows the first 10 by default), MU gap against the attack gap first, and
    # the headline's differences beside their CI ends; each card in a section the state declares
    assert state["runsHiddenMode"] == "SHOW_ALL"
    first = state["compareRunCharts"][0]
    assert first["type"] == "SCATTER" and (first["xaxis"]["key"], first["yaxis"]["key"]) == ("mu_gap", "lira_auc_gap")
    bars = [c["metricKey"] for c in state["compareRunCharts"] if c["type"] == "BAR"]
    assert bars[bars.index("verdict_diff_original") - 1:][:3] == [
        "verdict_ci_low_original", "verdict_diff_original", "verdict_ci_high_original"]
    sections = {s["uuid"] for s in state["compareRunSections"]}
    assert {c["metricSectionId"] for c in state["compareRunCharts"]} <= sections
    assert len({c["uuid"] for c in state["compareRunCharts"]}) == len(state["compareRunCharts"])
    # the parent's description opens with the links to that view, one click away, relative to the UI's page
    note = client.get_run(parent).data.tags["mlflow.note.content"]
    assert note.startswith(f"[Charts of every method](#/experiments/{experiment_id}/runs?workflowType="
                           "machine_learning&viewStateShareKey=verdicts-outliers&compareRunsMode=CHART)")
    # the parent's own metrics carry no float noise (0.40000081): rounded as the tables round them
    floors = {k: v for k, v in client.get_run(parent).data.metrics.items() if k.startswith("floor_")}
    assert floors and all(v == round(v, 3) for v in floors.values())
    shown = client.search_runs([experiment_id], state["searchFilter"])  # the filter the UI sends finds them
    assert {r.info.run_id for r in shown} == set(runs.values())
    url = mlflow_ui.runs_url(experiment_id, view="verdicts-outliers")
    assert url.endswith(f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
                        "&viewStateShareKey=verdicts-outliers")


def test_a_method_run_ends_when_its_work_ends_not_when_the_flow_finishes_it(experiment_id: str):
    run_id = tracking.start_run(experiment_id, "iau", {"kind": "test"})
    tracking.work_done(run_id)
    done = MlflowClient().get_run(run_id).info
    assert done.status == "RUNNING" and done.end_time is not None  # gaps still to come: not FINISHED yet
    time.sleep(0.05)
    tracking.finish(run_id, ok=True, keep_end_time=True)
    info = MlflowClient().get_run(run_id).info
    assert info.status == "FINISHED" and info.end_time == done.end_time
    other = tracking.start_run(experiment_id, "base", {"kind": "test"})
    tracking.finish(other)  # without work_done: ends now
    assert MlflowClient().get_run(other).info.end_time >= info.end_time


def test_summary_table_rows_follow_the_reading_order_and_every_method_has_a_verdict():
    from iau_core.verdicts import assess

    tables = [pd.DataFrame({"lira_auc": {"original": 0.8 + d, "retrain": 0.6, "retrain_alt": 0.61, "iau": 0.62 + d},
                            "mu_gap": {"original": 0.5, "retrain": 0.0, "retrain_alt": 0.2, "iau": 0.1},
                            "lira_auc_gap": {"original": 0.2, "retrain": 0.0, "retrain_alt": 0.01, "iau": 0.02 + d},
                            "unlearn_seconds": {"original": 0.0, "retrain": 40.0, "retrain_alt": 41.0, "iau": 0.5}})
              for d in (0.0, 0.01, -0.01)]
    summary = pd.concat(tables).groupby(level=0, sort=False).agg(["mean", "std"])
    summary.columns = [f"{m}_{s}" for m, s in summary.columns]
    found = assess(tables, summary, {"lira_auc_gap": 0.05}, headline="lira_auc")
    numbers = runs_list.verdict_metrics(found, tables)
    assert set(numbers) == {"original", "retrain", "retrain_alt", "iau"}
    assert numbers["retrain"]["verdict_diff_original"] == pytest.approx(-0.2)
    table = runs_list.summary_table(summary, found, numbers)
    assert list(table.method) == ["iau", "retrain_alt", "original", "retrain"]
    assert all(isinstance(v, str) and v for v in table.verdict)


def test_logged_metrics_are_rounded_to_what_their_noise_justifies():
    found = runs_list.rounded({"lira_auc": 0.99999904, "floor_mu_gap": 0.40000081, "unlearn_seconds": 1.0790704,
                               "test_acc": 78.9499998, "speedup": float("nan")})
    assert {k: v for k, v in found.items() if k != "speedup"} == {
        "lira_auc": 1.0, "floor_mu_gap": 0.4, "unlearn_seconds": 1.079, "test_acc": 78.95}
    assert np.isnan(found["speedup"])


def test_a_registered_model_is_named_after_its_registry_entry_and_shows_its_version(experiment_id: str):
    """The base model's LoggedModel is named as registered (not "model"), and carries the tag the UI reads its
    registry versions from (without it, the Logged models page says "Not registered")."""
    import torch

    run_id = tracking.start_run(experiment_id, "base", {"kind": "test"})
    uri = tracking.log_model(run_id, torch.nn.Linear(4, 2), torch.zeros(2, 4), "runs-list-base", "a test model")
    tracking.finish(run_id)
    model = MlflowClient().get_logged_model(tracking.logged_model_id(run_id))
    assert uri == "models:/runs-list-base/1" and model.name == "runs-list-base"
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": "runs-list-base", "version": "1"}]
