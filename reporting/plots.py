"""Figures for the comparison: what a reader checks first, drawn the way the papers draw them.

Each function returns a matplotlib Figure built without pyplot: no global figure registry, no interactive
backend (a bare Figure renders PNG with Agg), safe on a headless worker and on any thread. Log one with
stores.tracking.log_figure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iau_core.config import FLOOR, GOLD

if TYPE_CHECKING:
    from iau_core.unlearning import MethodResult

ROC_MIN_FPR = 1e-3  # the lower end of the log-scale ROC (Carlini et al., LiRA)


def _std(value: float) -> float:
    """A std to draw as an error bar: NaN (one seed) draws none."""
    return 0.0 if value is None or not math.isfinite(value) else float(value)


def _seeds_text(seeds: int | None) -> str:
    if seeds is None:
        return "mean ± std"
    return "one seed" if seeds == 1 else f"mean ± std over {seeds} seeds"


def _noise_floor(ax: Axes, summary: pd.DataFrame) -> None:
    """Dashed lines at retrain_alt's gaps: a second gold model's distance to the first, so any gap below them
    is indistinguishable from retraining."""
    if FLOOR not in summary.index:
        return
    row = summary.loc[FLOOR]
    ax.axvline(row["mu_gap_mean"], color="grey", linestyle="--", linewidth=1, label="noise floor (retrain_alt)")
    ax.axhline(row["ue_gap_mean"], color="grey", linestyle="--", linewidth=1)


def mu_ue_plot(summary: pd.DataFrame, seeds: int | None = None) -> Figure:
    """MU gap (x) against UE gap (y) per method, with std error bars: the best method sits nearest the origin,
    where retrain (the gold model) is by definition."""
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter([0], [0], marker="*", s=220, color="gold", edgecolor="black", zorder=3, label="retrain (gold)")
    for method, row in summary.iterrows():
        if method == GOLD:
            continue
        x, y = float(row["mu_gap_mean"]), float(row["ue_gap_mean"])
        ax.errorbar(x, y, xerr=_std(row.get("mu_gap_std")), yerr=_std(row.get("ue_gap_std")),
                    fmt="o", capsize=4, zorder=2)
        ax.annotate(str(method), (x, y), textcoords="offset points", xytext=(6, 6))
    _noise_floor(ax, summary)
    ax.set_xlabel("MU gap: |test accuracy − retrain's| (percentage points)")
    ax.set_ylabel("UE gap: |attack success on D_f − retrain's| (percentage points)")
    ax.set_title(f"MU vs UE gap to retrain ({_seeds_text(seeds)})")
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return fig


def grad_norm_plot(norms: dict[str, np.ndarray], title: str = "Per-sample gradient norms") -> Figure:
    """Per-sample L2 gradient norms as dots (the paper's Fig. 3): gradient-norm regularisation should pull the
    whole cloud down and, above all, its outliers, which the legend's mean and p99 quantify."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for name, values in norms.items():
        values = np.asarray(values, dtype=float).ravel()
        label = f"{name} (mean {values.mean():.3g}, p99 {np.percentile(values, 99):.3g})"
        ax.scatter(np.arange(values.size), values, s=3, alpha=0.4, linewidths=0, label=label)
    ax.set_yscale("log")  # zero norms (possible after saturation) are masked, not drawn at -inf
    ax.set_xlabel("record index")
    ax.set_ylabel("per-sample gradient L2 norm (log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(loc="upper right", markerscale=4)
    return fig


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> Figure:
    """Membership-inference ROC curves on log-log axes (Carlini et al.): an attack is judged by its true
    positives at low false-positive rates, which a linear plot squeezes into its corner."""
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUC {auc:.3f})")
    ax.plot([ROC_MIN_FPR, 1], [ROC_MIN_FPR, 1], color="black", linestyle="--", linewidth=1, label="chance")
    ax.axvline(0.01, color="grey", linestyle=":", linewidth=1.2, label="1% FPR")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(ROC_MIN_FPR, 1)
    ax.set_ylim(ROC_MIN_FPR, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(loc="lower right")
    return fig


def comparison_figures(outcomes: list[MethodResult], summary: pd.DataFrame) -> dict[str, Figure]:
    """{artifact file: figure}: MU against UE over seeds, and LiRA's ROC on D_f for the first seed (the floor model
    left out: its curve is retrain's again)."""
    seeds = sorted({o.seed for o in outcomes})
    curves = {o.method: (o.scores.lira_roc.fpr, o.scores.lira_roc.tpr, o.scores.lira_roc.auc)
              for o in outcomes if o.seed == seeds[0] and o.method != FLOOR}
    return {"plots/mu_vs_ue.png": mu_ue_plot(summary, seeds=len(seeds)),
            "plots/lira_roc.png": roc_plot(curves, f"LiRA on D_f vs held-out records (seed {seeds[0]})")}
