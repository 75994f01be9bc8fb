"""reporting.plots and reporting.tables, and the comparison's Prefect table artifact (tasks.evaluation): figures
render to real PNGs with what a reader needs on them, the markdown table reads right, a Prefect table artifact
lands on its flow run (and is skipped outside one)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import matplotlib
import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score, roc_curve

from reporting import plots, tables
from stores import tracking
from tasks.evaluation import publish_table_artifact

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS = ["original", "retrain", "retrain_alt", "iau"]


def summary(seeds: int) -> pd.DataFrame:
    """The shape the evaluation produces: one row per method, <metric>_mean and <metric>_std columns."""
    rows = {
        "original": {"mu_gap": (0.9, 0.3), "ue_gap": (14.2, 2.1), "test_acc": (88.41, 0.52), "lira_auc": (0.6123, 0.01),
                     "unlearn_seconds": (0.0, 0.0)},
        "retrain": {"mu_gap": (0.0, 0.0), "ue_gap": (0.0, 0.0), "test_acc": (87.52, 0.41), "lira_auc": (0.5312, 0.008),
                    "unlearn_seconds": (41.2345, 1.5)},
        "retrain_alt": {"mu_gap": (0.45, 0.2), "ue_gap": (2.5, 0.9), "test_acc": (87.7, 0.3), "lira_auc": (0.534, 0.01),
                        "unlearn_seconds": (40.9, 1.2)},
        "iau": {"mu_gap": (0.31, 0.1), "ue_gap": (4.8, 1.7), "test_acc": (87.83, 0.35), "lira_auc": (0.5521, 0.012),
                "unlearn_seconds": (0.5612, 0.03)},
    }
    table = pd.DataFrame({
        method: {f"{m}_{stat}": (mean if stat == "mean" else (std if seeds > 1 else math.nan))
                 for m, (mean, std) in metrics.items() for stat in ("mean", "std")}
        for method, metrics in rows.items()
    }).T
    return table.loc[METHODS]


def png(fig: Figure, path: Path) -> bytes:
    fig.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    return data


def legend_labels(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


# ---- plots


@pytest.mark.parametrize("seeds", [3, 1])
def test_mu_ue_plot(seeds: int, tmp_path: Path):
    table = summary(seeds)
    fig = plots.mu_ue_plot(table, seeds=seeds)
    png(fig, tmp_path / "mu_ue.png")
    ax = fig.axes[0]
    assert ax.get_title() == ("MU vs UE gap to retrain (mean ± std over 3 seeds)" if seeds == 3
                              else "MU vs UE gap to retrain (one seed)")
    assert "percentage points" in ax.get_xlabel() and "percentage points" in ax.get_ylabel()
    assert not ax.texts  # names in the legend, never on the axes: they cannot overlap
    labels = legend_labels(fig)
    assert {"retrain (gold)", "noise floor (retrain_alt)", "within both floors", "original", "retrain_alt",
            "iau"} <= set(labels)
    bars = [c for c in ax.containers if c.has_xerr or c.has_yerr]
    assert len(bars) == (3 if seeds > 1 else 0)  # error bars only where seeds give a spread
    floor_x = [line for line in ax.get_lines() if line.get_label() == "noise floor (retrain_alt)"][0]
    assert floor_x.get_xdata()[0] == pytest.approx(0.45)
    assert any(line.get_ydata()[0] == pytest.approx(2.5) and line.get_linestyle() == "--" for line in ax.get_lines())
    assert ax.get_xlim()[0] <= 0 and ax.get_ylim()[0] <= 0  # the origin (retrain) is in view


def test_mu_ue_plot_without_noise_floor_row(tmp_path: Path):
    fig = plots.mu_ue_plot(summary(3).drop(index="retrain_alt"))
    png(fig, tmp_path / "mu_ue.png")
    assert "noise floor (retrain_alt)" not in legend_labels(fig)
    assert fig.axes[0].get_title() == "MU vs UE gap to retrain (mean ± std)"


def test_grad_norm_plot(tmp_path: Path):
    rng = np.random.default_rng(0)
    norms = {"GR (batch, alpha=0.005)": rng.lognormal(-1.0, 0.8, 2000),
             "alpha = 0": np.append(rng.lognormal(0.0, 1.2, 1999), 0.0)}  # a saturated record: norm 0
    fig = plots.grad_norm_plot(norms)
    png(fig, tmp_path / "grad_norms.png")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert len(ax.collections) == 2
    for label, (name, values) in zip(legend_labels(fig), norms.items(), strict=True):
        assert label == f"{name} (mean {values.mean():.3g}, p99 {np.percentile(values, 99):.3g})"


def test_roc_plot(tmp_path: Path):
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(500), np.zeros(2000)]
    curves = {}
    for name, shift in {"original": 0.6, "iau": 0.2}.items():
        scores = np.r_[rng.normal(shift, 1, 500), rng.normal(0, 1, 2000)]
        fpr, tpr, _ = roc_curve(labels, scores)
        curves[name] = (fpr, tpr, roc_auc_score(labels, scores))
    fig = plots.roc_plot(curves, "LiRA on D_f")
    png(fig, tmp_path / "roc.png")
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlim() == pytest.approx((1e-3, 1))
    assert ax.get_title() == "LiRA on D_f"
    assert legend_labels(fig)[:2] == [f"{n} (AUC {c[2]:.3f})" for n, c in curves.items()]
    assert {"chance", "1% FPR"} <= set(legend_labels(fig))
    one_pct = [line for line in ax.get_lines() if line.get_label() == "1% FPR"][0]
    assert one_pct.get_linestyle() == ":" and one_pct.get_xdata()[0] == pytest.approx(0.01)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    root = tmp_path_factory.mktemp("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    yield root
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def experiment(store: Path) -> str:
    return MlflowClient().create_experiment("plots", artifact_location=(store / "artifacts").as_uri())


def test_log_figure_puts_the_png_on_the_run(experiment: str, tmp_path: Path):
    client = MlflowClient()
    run_id = tracking.start_run(experiment, "figures", {"kind": "test"})
    tracking.log_figure(run_id, plots.mu_ue_plot(summary(3), seeds=3), "figures/mu_ue.png")
    assert [f.path for f in client.list_artifacts(run_id, "figures")] == ["figures/mu_ue.png"]
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="figures/mu_ue.png",
                                                dst_path=str(tmp_path))
    data = Path(local).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert client.get_run(run_id).info.status == "RUNNING"


def test_log_figure_closes_a_pyplot_figure(experiment: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = MlflowClient()
    run_id = tracking.start_run(experiment, "pyplot", {"kind": "test"})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert plt.fignum_exists(fig.number)
    tracking.log_figure(run_id, fig, "line.png")
    assert not plt.fignum_exists(fig.number)
    assert [f.path for f in client.list_artifacts(run_id)] == ["line.png"]


# ---- reporting.tables: markdown


def test_summary_markdown_three_seeds():
    text = tables.summary_markdown(summary(3), {"mu_gap": 0.45, "ue_gap": 2.5},
                                   ["test_acc", "mu_gap", "ue_gap", "lira_auc", "unlearn_seconds"])
    lines = text.splitlines()
    assert lines[0] == "| method | test_acc | mu_gap | ue_gap | lira_auc | unlearn_seconds |"
    assert lines[1] == "| --- | ---: | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| original | 88.41 ± 0.52 | 0.90 ± 0.30 ✗ | 14.20 ± 2.10 ✗ | 0.612 ± 0.010 | 0.000 ± 0.000 |"
    assert lines[3] == "| retrain | 87.52 ± 0.41 | 0.00 ± 0.00 ✓ | 0.00 ± 0.00 ✓ | 0.531 ± 0.008 | 41.234 ± 1.500 |"
    assert lines[4].startswith("| retrain_alt | 87.70 ± 0.30 | 0.45 ± 0.20 ✓ | 2.50 ± 0.90 ✓ |")  # at the floor
    assert lines[5] == "| iau | 87.83 ± 0.35 | 0.31 ± 0.10 ✓ | 4.80 ± 1.70 ✗ | 0.552 ± 0.012 | 0.561 ± 0.030 |"
    assert lines[6] == ""
    assert "within the noise floor" in lines[7] and "mu_gap 0.45, ue_gap 2.50" in lines[7]


def test_summary_markdown_one_seed_and_gaps_without_a_floor():
    table = summary(1)
    table.loc["original", "unlearn_seconds_mean"] = math.nan  # a metric a method has not got
    floors = {"ue_gap": 2.5, "lira_auc_gap": 0.01}
    text = tables.summary_markdown(table, floors, ["mu_gap", "ue_gap", "unlearn_seconds"])
    lines = text.splitlines()
    assert lines[2] == "| original | 0.90 | 14.20 ✗ | – |"  # no '±' with one seed, no marker without a floor
    assert lines[5] == "| iau | 0.31 | 4.80 ✗ | 0.561 |"
    assert lines[-1].endswith("Floors: ue_gap 2.50.")  # only floors of shown columns
    assert "✓" not in tables.summary_markdown(table, {}, ["mu_gap"])
    assert len(tables.summary_markdown(table, {}, ["mu_gap"]).splitlines()) == 6  # no legend without floors


def test_decimals_follow_the_metric():
    assert [tables.decimals(m) for m in ("test_acc", "mu_gap", "lira_auc", "lira_auc_gap", "unlearn_seconds",
                                         "tpr_at_1pct_fpr", "avg_rank")] == [2, 2, 3, 3, 3, 3, 2]


def test_what_attacks_see_shows_the_tenth_of_a_percent_point_beside_the_one_percent_one():
    strength = {"attack_strength": 55.0, "attack_strength_auc": 0.56, "lira_strength": 0.61,
                "lira_strength_tpr_at_1pct_fpr": 0.032, "lira_strength_tpr_at_0_1pct_fpr": 0.004,
                "rmia_strength": 0.63, "rmia_strength_tpr_at_1pct_fpr": 0.05, "rmia_strength_tpr_at_0_1pct_fpr": 0.011}
    line = tables.what_attacks_see(strength)
    assert "LiRA AUC 0.610, TPR at 1% FPR 3.2%, at 0.1% FPR 0.4%;" in line
    assert "RMIA AUC 0.630, TPR at 1% FPR 5.0%, at 0.1% FPR 1.1%;" in line
    # strengths recorded before the 0.1% point existed still read
    older = {k: v for k, v in strength.items() if "0_1pct" not in k}
    assert "LiRA AUC 0.610, TPR at 1% FPR 3.2%; RMIA" in tables.what_attacks_see(older)


# ---- tasks.evaluation: Prefect table artifact


def test_artifact_key_is_what_prefect_accepts():
    from prefect.types.names import raise_on_name_alphanumeric_dashes_only

    for raw, clean in {"IAU comparison_v2": "iau-comparison-v2", "unlearn/outliers: table": "unlearn-outliers-table",
                       "ok-key-1": "ok-key-1"}.items():
        assert tables.artifact_key(raw) == clean
        assert raise_on_name_alphanumeric_dashes_only(clean) == clean
    with pytest.raises(ValueError):
        tables.artifact_key("__")


RECORDS = [{"method": "iau", "mu_gap": np.float64(0.31), "ue_gap": math.nan, "seeds": np.int64(3)},
           {"method": "retrain", "mu_gap": 0.0, "ue_gap": 0.0, "seeds": 3}]


def test_publish_outside_a_run_does_nothing_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Prefect's deprecation warning for run-less artifacts would raise here
        assert publish_table_artifact(RECORDS, "Comparison", "outside a flow") is None


@pytest.fixture(scope="module")
def prefect_api():
    """A temporary Prefect API (~20 s): used once in this module."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):  # iau_core.runtime's 180 s, not the harness's 30
        yield


def test_publish_inside_a_flow_run(prefect_api):
    from prefect import flow
    from prefect.artifacts import Artifact
    from prefect.runtime import flow_run

    @flow
    def publishing() -> str:
        publish_table_artifact(RECORDS, "Unlearn comparison", "methods against retrain")
        return flow_run.id

    run_id = publishing()
    artifact = Artifact.get("unlearn-comparison")
    assert artifact is not None
    assert str(artifact.flow_run_id) == run_id
    assert artifact.type == "table" and artifact.description == "methods against retrain"
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert data == [{"method": "iau", "mu_gap": 0.31, "ue_gap": None, "seeds": 3},
                    {"method": "retrain", "mu_gap": 0.0, "ue_gap": 0.0, "seeds": 3}]


def test_roc_plot_with_fifteen_methods_reuses_no_style_and_keeps_the_legend_off_the_curves(tmp_path: Path):
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(200), np.zeros(500)]
    curves = {}
    for i in range(15):
        scores = np.r_[rng.normal(0.05 * i, 1, 200), rng.normal(0, 1, 500)]
        fpr, tpr, _ = roc_curve(labels, scores)
        curves[f"method_{i}"] = (fpr, tpr, roc_auc_score(labels, scores))
    fig = plots.roc_plot(curves, "LiRA on D_f")
    png(fig, tmp_path / "roc.png")
    ax = fig.axes[0]
    assert len({line.get_color() for line in ax.get_lines()[:15]}) == 15  # no two methods share a colour
    shared = plots.method_colors(curves)
    assert all(line.get_color() == shared[name] for line, name in zip(ax.get_lines(), curves, strict=False))
    renderer = FigureCanvasAgg(fig).get_renderer()
    legend_box, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend_box.x0 >= axes_box.x1  # beside the axes, covering no curve


def test_mu_ue_plot_gives_sixteen_close_methods_a_colour_each_and_a_legend_beside_the_axes(tmp_path: Path):
    rng = np.random.default_rng(3)
    names = ["original", "retrain", "retrain_alt", *[f"method_{i}" for i in range(13)]]
    table = pd.DataFrame({"mu_gap_mean": rng.uniform(0.3, 0.5, 16), "ue_gap_mean": rng.uniform(0.9, 1.1, 16),
                          "mu_gap_std": 0.1, "ue_gap_std": 0.1}, index=names)
    verdicts = pd.Series({n: ("forgets" if i % 2 else "no change") for i, n in enumerate(names)})
    fig = plots.mu_ue_plot(table, seeds=3, verdicts=verdicts)
    png(fig, tmp_path / "mu_ue.png")
    ax = fig.axes[0]
    points = [c.lines[0] for c in ax.containers]  # one errorbar container per method but retrain
    assert len(points) == 15 and len({line.get_color() for line in points}) == 15
    assert {line.get_marker() for line in points} == {"o", "X"}  # the marker is the verdict
    assert "method_0 (forgets)" in legend_labels(fig)
    renderer = FigureCanvasAgg(fig).get_renderer()
    legend_box, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend_box.x0 >= axes_box.x1 and not ax.texts  # no name on the axes, so none overlaps another


def test_method_colors_come_from_tab20_and_never_repeat_within_twenty():
    colors = plots.method_colors([f"m{i}" for i in range(20)])
    assert len(set(colors.values())) == 20
    assert set(colors.values()) == {matplotlib.colormaps["tab20"](i) for i in range(20)}


def test_verdict_plot_draws_one_panel_per_metric_with_the_floor(tmp_path: Path):
    from iau_core.verdicts import verdict_table

    seeds = []
    for shift in (0.0, 0.01, -0.01):
        seeds.append(pd.DataFrame({"lira_auc": {"original": 0.75 + shift, "retrain": 0.55, "retrain_alt": 0.56,
                                                "iau": 0.58 + shift},
                                   "mia_forget_asr": {"original": 70 + shift, "retrain": 60, "retrain_alt": 61,
                                                      "iau": 62}}))
    fig = plots.verdict_plot(verdict_table(seeds), {"lira_auc_gap": 0.01, "ue_gap": 1.0},
                             ["mia_forget_asr", "lira_auc"], "verdicts")
    png(fig, tmp_path / "verdicts.png")
    assert [ax.get_title() for ax in fig.axes] == ["mia_forget_asr", "lira_auc"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["retrain_alt", "iau"]
    assert all(ax.patches for ax in fig.axes)  # the noise-floor band
