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
from matplotlib.lines import Line2D

from iau_core.config import FLOOR, GOLD
from iau_core.metrics import GAPS as GAPS_OF

if TYPE_CHECKING:
    from iau_core.verdicts import Assessment

if TYPE_CHECKING:
    from iau_core.unlearning import MethodResult

ROC_MIN_FPR = 1e-3  # the lower end of the log-scale ROC (Carlini et al., LiRA)
# 10 distinct colours (tab10) x 2 line styles: 20 curves, none sharing both colour and style
ROC_STYLES = [(f"C{i}", style) for style in ("-", "--") for i in range(10)]


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


def _place_labels(ax: Axes, points: dict[str, tuple[float, float]], fontsize: float = 8) -> None:
    """Direct labels that never overlap: each label goes to the first free slot next to its point (right, then
    stepping up and down a line at a time), in axes fractions with the limits fixed first; a label moved off its
    point gets a thin leader line. Greedy, deterministic, enough for the 15 methods of a comparison."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    width_in, height_in = ax.figure.get_size_inches() * 0.8  # the axes' share of the figure, about
    line = fontsize * 1.8 / 72 / height_in  # one text line, as a fraction of the axes' height, with a margin
    char = fontsize * 0.72 / 72 / width_in  # one character's width (generous), as a fraction of the axes' width
    placed: list[tuple[float, float, float, float]] = []
    for name, (x, y) in sorted(points.items(), key=lambda item: (item[1][1], item[1][0])):
        fx, fy = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)
        w = char * len(name)
        for k in range(60):
            dy = (k + 1) // 2 * line * (1 if k % 2 else -1)
            left = fx + 0.012 if fx + 0.012 + w <= 1 else fx - 0.012 - w
            box = (left, fy + dy - line / 2, left + w, fy + dy + line / 2)
            inside = 0 <= box[1] and box[3] <= 1
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                                  for b in placed):
                break
        placed.append(box)
        ax.annotate(name, (x, y), xytext=(box[0], (box[1] + box[3]) / 2), textcoords="axes fraction",
                    fontsize=fontsize, va="center", ha="left",
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5} if abs(dy) > 0 else None)


def mu_ue_plot(summary: pd.DataFrame, seeds: int | None = None, verdicts: pd.Series | None = None) -> Figure:
    """MU gap (x) against UE gap (y) per method, with std error bars: the best method sits nearest the origin,
    where retrain (the gold model) is by definition. Labels sit beside their points without overlapping; with
    `verdicts`, a point's colour is its method's verdict."""
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter([0], [0], marker="*", s=220, color="gold", edgecolor="black", zorder=3, label="retrain (gold)")
    points, seen = {}, set()
    for method, row in summary.iterrows():
        if method == GOLD:
            continue
        x, y = float(row["mu_gap_mean"]), float(row["ue_gap_mean"])
        verdict = None if verdicts is None else verdicts.get(method)
        color = VERDICT_COLORS.get(verdict, "tab:blue") if verdicts is not None else None
        label = verdict if verdict in VERDICT_COLORS and verdict not in seen else None
        seen.add(verdict)
        ax.errorbar(x, y, xerr=_std(row.get("mu_gap_std")), yerr=_std(row.get("ue_gap_std")),
                    fmt="o", capsize=3, zorder=2, color=color, label=label, markersize=5, elinewidth=0.8)
        points[str(method)] = (x, y)
    _noise_floor(ax, summary)
    ax.set_xlabel("MU gap: |test accuracy − retrain's| (percentage points)")
    ax.set_ylabel("UE gap: |attack success on D_f − retrain's| (percentage points)")
    ax.set_title(f"MU vs UE gap to retrain ({_seeds_text(seeds)})")
    xs = [p[0] for p in points.values()] + [0.0]
    ys = [p[1] for p in points.values()] + [0.0]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    ax.set_xlim(min(0.0, min(xs)) - 0.05 * span_x, max(xs) + 0.35 * span_x)  # room on the right for labels
    ax.set_ylim(min(0.0, min(ys)) - 0.08 * span_y, max(ys) + 0.12 * span_y)
    _place_labels(ax, points)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, title="verdict" if verdicts is not None else None)
    return fig


# One colour per verdict (iau_core.verdicts): what a reader looks for first.
VERDICT_COLORS = {"forgets": "tab:green", "overshoots": "tab:red", "moves away": "tab:purple",
                  "no detectable change": "tab:grey", "no change": "black", "n/a (one seed)": "tab:blue"}


def verdict_plot(table: pd.DataFrame, floors: dict[str, float], metrics: list[str], title: str) -> Figure:
    """Small multiples, one panel per judged metric: each method's paired difference to retrain with its 95% CI
    (a dot without a bar: one seed), coloured by its verdict on that metric; the band is retrain_alt's noise floor
    of the metric's gap (±floor), the solid line retrain itself (0), the dotted one original (where doing nothing
    sits). Methods are rows, so 15 names never overlap. `table`: verdicts.verdict_table."""
    methods = list(dict.fromkeys(table.method))
    fig = Figure(figsize=(4.2 * len(metrics) + 1.5, 0.32 * len(methods) + 1.8), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(methods))[::-1]
    for ax, metric in zip(axes, metrics, strict=True):
        rows = table[table.metric == metric].set_index("method").reindex(methods)
        gap = next((g for g, m in GAPS_OF.items() if m == metric), None)
        if gap in floors:
            ax.axvspan(-floors[gap], floors[gap], color="grey", alpha=0.15, label="noise floor (±retrain_alt's gap)")
        ax.axvline(0, color="gold", linewidth=2, label="retrain (gold)")
        original = float(np.nanmean(rows.vs_retrain - rows.vs_original))  # original - retrain, mean over seeds
        if math.isfinite(original):
            ax.axvline(original, color="black", linestyle=":", linewidth=1.2, label="original (doing nothing)")
        for yi, (_, row) in zip(y, rows.iterrows(), strict=True):
            color = VERDICT_COLORS.get(row.verdict, "tab:blue")
            lo, hi = row.vs_retrain_lo, row.vs_retrain_hi
            if math.isfinite(lo) and math.isfinite(hi):
                ax.plot([lo, hi], [yi, yi], color=color, linewidth=1.5)
            ax.plot(row.vs_retrain, yi, "o", color=color, markersize=5)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("method − retrain (95% CI)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, methods)
    handles = [Line2D([], [], marker="o", color=c, linestyle="-", label=v) for v, c in VERDICT_COLORS.items()
               if v in set(table.verdict)]
    fig.legend(handles=[*axes[0].get_legend_handles_labels()[0], *handles], loc="outside lower center",
               ncols=4, fontsize=8)
    fig.suptitle(title)
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
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        color, style = ROC_STYLES[i % len(ROC_STYLES)]
        ax.plot(fpr, tpr, linewidth=1.5, color=color, linestyle=style, label=f"{name} (AUC {auc:.3f})")
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
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, borderaxespad=0)  # beside the curves
    return fig


def comparison_figures(outcomes: list[MethodResult], summary: pd.DataFrame,
                       found: Assessment | None = None) -> dict[str, Figure]:
    """{artifact file: figure}: MU against UE over seeds, and LiRA's ROC on D_f for the first seed (the floor model
    left out: its curve is retrain's again); with `found`, the verdicts' small multiples too."""
    seeds = sorted({o.seed for o in outcomes})
    curves = {o.method: (o.scores.lira_roc.fpr, o.scores.lira_roc.tpr, o.scores.lira_roc.auc)
              for o in outcomes if o.seed == seeds[0] and o.method != FLOOR}
    figures = {"plots/mu_vs_ue.png": mu_ue_plot(summary, len(seeds), None if found is None else found.verdicts),
               "plots/lira_roc.png": roc_plot(curves, f"LiRA on D_f vs held-out records (seed {seeds[0]})")}
    if found is not None and not found.table.empty:
        floors = {g: float(summary.loc[FLOOR, f"{g}_mean"]) for g in GAPS_OF if FLOOR in summary.index}
        metrics = list(dict.fromkeys(found.table.metric))
        figures["plots/verdicts.png"] = verdict_plot(
            found.table, floors, metrics,
            f"Each method − retrain, mean and paired 95% CI over {len(seeds)} seed(s) (one seed: over the records on "
            f"{found.headline}, none on the others); colour = verdict on that metric")
    return figures
