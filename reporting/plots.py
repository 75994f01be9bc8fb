"""Figures for the comparison: what a reader checks first, drawn the way the papers draw them.

Each function returns a matplotlib Figure built without pyplot: no global figure registry, no interactive
backend (a bare Figure renders PNG with Agg), safe on a headless worker and on any thread. Log one with
stores.tracking.log_figure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from iau_core.config import DO_NOTHING, FLOOR, GOLD
from iau_core.metrics import GAPS as GAPS_OF

if TYPE_CHECKING:
    from iau_core.verdicts import Assessment

if TYPE_CHECKING:
    from iau_core.unlearning import MethodResult

ROC_MIN_FPR = 1e-3  # the lower end of the log-scale ROC (Carlini et al., LiRA)
# tab20's strong colours first, then their light partners: the first ten methods never get a light/dark pair.
PALETTE = [matplotlib.colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
# The marker says the verdict, the colour the method: a legend entry per method reads "iau (forgets)".
VERDICT_MARKERS = {"forgets": "o", "overshoots": "^", "moves away": "v", "no detectable change": "s",
                   "no change": "X", "n/a (one seed)": "D"}
REFERENCE_MARKER = "P"


def method_colors(methods) -> dict[str, tuple]:
    """One colour per method, in the given order (the comparison's), the same in every plot. Past 20 methods
    the palette repeats; roc_plot then also changes the line style."""
    return {str(m): PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def comparison_colors(methods) -> dict[str, tuple]:
    """The colours of a comparison's figures and of its method runs in MLflow's charts (RUN_COLOR_TAG): the
    methods in the comparison's order, retrain (drawn as a ROC curve and a star) last."""
    return method_colors([m for m in methods if m != GOLD] + [GOLD])


# The run tag MLflow's UI (3.17) takes a run's colour from, in every chart and the runs table's swatch (else a hash
# of the run id, so runs may share one); its colour picker writes "#rrggbb" there.
RUN_COLOR_TAG = "mlflow.runColor"


def hex_color(color) -> str:
    """'#rrggbb' (lowercase, no alpha) of a matplotlib colour: RUN_COLOR_TAG's form."""
    return to_hex(color, keep_alpha=False)


def _std(value: float) -> float | None:
    """A std to draw as an error bar: None (no bar) where there is none, e.g. one seed (NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


def _seeds_text(seeds: int | None) -> str:
    if seeds is None:
        return "mean ± std"
    return "one seed" if seeds == 1 else f"mean ± std over {seeds} seeds"


def _noise_floor(ax: Axes, summary: pd.DataFrame) -> None:
    """retrain_alt's gaps: a second gold model's distance to the first. Dashed lines at each, and the box below
    both shaded: a method inside it is indistinguishable from retraining on both gaps."""
    if FLOOR not in summary.index:
        return
    mu, ue = float(summary.loc[FLOOR, "mu_gap_mean"]), float(summary.loc[FLOOR, "ue_gap_mean"])
    ax.axvline(mu, color="grey", linestyle="--", linewidth=1, label="noise floor (retrain_alt)")
    ax.axhline(ue, color="grey", linestyle="--", linewidth=1)
    ax.fill_between([0, mu], 0, ue, color="grey", alpha=0.15, linewidth=0, label="within both floors")


def mu_ue_plot(summary: pd.DataFrame, seeds: int | None = None, verdicts: pd.Series | None = None,
               colors: dict[str, tuple] | None = None) -> Figure:
    """MU gap (x) against UE gap (y) per method: the best method sits nearest the origin, where retrain (the gold
    model) is by definition. Each method has its own colour (tab20, `colors` or method_colors) and a legend entry
    beside the axes, so no two names ever overlap; with `verdicts` the marker is the verdict's and the entry names
    it. Error bars (std over seeds) only where more than one seed ran; the noise floor is drawn."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter([0], [0], marker="*", s=220, color="gold", edgecolor="black", zorder=3, label="retrain (gold)")
    _noise_floor(ax, summary)
    methods = [m for m in summary.index if m != GOLD]
    colors = colors or method_colors(methods)
    xs, ys = [0.0], [0.0]
    for method in methods:
        row = summary.loc[method]
        x, y = float(row["mu_gap_mean"]), float(row["ue_gap_mean"])
        verdict = None if verdicts is None else verdicts.get(method)
        marker = VERDICT_MARKERS.get(verdict, REFERENCE_MARKER if method in (FLOOR, DO_NOTHING) else "o")
        label = f"{method} ({verdict})" if isinstance(verdict, str) else str(method)
        ax.errorbar(x, y, xerr=_std(row.get("mu_gap_std")), yerr=_std(row.get("ue_gap_std")), fmt=marker,
                    color=colors[str(method)], markeredgecolor="black", markeredgewidth=0.5, markersize=7,
                    capsize=3, elinewidth=0.8, zorder=2, label=label)
        xs += [x - (_std(row.get("mu_gap_std")) or 0), x + (_std(row.get("mu_gap_std")) or 0)]  # bars in view
        ys += [y - (_std(row.get("ue_gap_std")) or 0), y + (_std(row.get("ue_gap_std")) or 0)]
    ax.set_xlabel("MU gap: |test accuracy − retrain's| (percentage points)")
    ax.set_ylabel("UE gap: |attack success on D_f − retrain's| (percentage points)")
    ax.set_title(f"MU vs UE gap to retrain ({_seeds_text(seeds)})")
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    ax.set_xlim(min(xs) - 0.05 * span_x, max(xs) + 0.08 * span_x)
    ax.set_ylim(min(ys) - 0.08 * span_y, max(ys) + 0.08 * span_y)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, borderaxespad=0,
              title="method (verdict)" if verdicts is not None else "method")
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


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str,
             colors: dict[str, tuple] | None = None) -> Figure:
    """Membership-inference ROC curves on log-log axes (Carlini et al.): an attack is judged by its true
    positives at low false-positive rates, which a linear plot squeezes into its corner. One colour per method
    (`colors`, as in mu_ue_plot, or method_colors): no two curves share one."""
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.add_subplot()
    colors = colors or method_colors(curves)
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        style = ("-", "--", ":")[i // len(PALETTE) % 3]  # past 20 curves a colour repeats, with another style
        ax.plot(fpr, tpr, linewidth=1.5, color=colors[name], linestyle=style, label=f"{name} (AUC {auc:.3f})")
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
    colors = comparison_colors(summary.index)
    figures = {"plots/mu_vs_ue.png": mu_ue_plot(summary, len(seeds), None if found is None else found.verdicts,
                                                colors),
               "plots/lira_roc.png": roc_plot(curves, f"LiRA on D_f vs held-out records (seed {seeds[0]})", colors)}
    if found is not None and not found.table.empty:
        floors = {g: float(summary.loc[FLOOR, f"{g}_mean"]) for g in GAPS_OF if FLOOR in summary.index}
        metrics = list(dict.fromkeys(found.table.metric))
        figures["plots/verdicts.png"] = verdict_plot(
            found.table, floors, metrics,
            f"Each method − retrain, mean and paired 95% CI over {len(seeds)} seed(s) (one seed: over the records on "
            f"{found.headline}, none on the others); colour = verdict on that metric")
    return figures
