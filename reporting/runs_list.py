"""What the MLflow runs list shows of a comparison: each method's verdict and its headline paired differences with
their 95% CI ends (metrics and a tag on each method's run), the summary table of the parent run, and the columns of
the saved view that shows them. Pure: numbers and words from a verdicts.Assessment; publishing is the tasks' part.
"""

from __future__ import annotations

import math

import pandas as pd

from iau_core.attacks.roc import Roc
from iau_core.config import DO_NOTHING, GOLD
from iau_core.metrics import LIRA_AUC_GAP, MU_GAP, SPEEDUP, UE_GAP, UNLEARN_SECONDS
from iau_core.verdicts import Assessment, Interval, paired, record_interval, t_interval
from reporting.tables import decimals
from reporting.verdicts import order

# The references have no verdict of their own (nothing to judge): their tag says what they are instead.
REFERENCE_VERDICTS = {DO_NOTHING: "reference: doing nothing", GOLD: "reference: gold model"}
VERDICT_RANK = "verdict_rank"
# The verdict columns' decimals: a bootstrap CI's ends vary by about 0.003 AUC between sets of draws, so a fifth
# decimal is noise (and the runs list shows every digit it is given).
PLACES = 4
ZERO = Interval(0.0, 0.0, 0.0, 0)  # a model against itself: the same scores on every seed and every draw


def verdict_of(found: Assessment, method: str) -> str:
    """The verdict a method's run and the parent's `verdict.<method>` tag carry: every method has one."""
    return REFERENCE_VERDICTS.get(method) or str(found.verdicts.get(method, "n/a"))


def verdict_key(name: str, versus: str) -> str:
    """'verdict_diff_original', 'verdict_ci_low_retrain', ...: name in diff, ci_low, ci_high."""
    return f"verdict_{name}_{versus}"


def _gold_move(tables: list[pd.DataFrame], headline: str, rocs: dict[str, Roc] | None) -> Interval:
    """retrain − original on the headline metric, with the interval the others get: over seeds, or with one seed
    over the records (the same bootstrap draws as the compared methods': same sizes, same seed)."""
    if len(tables) == 1 and rocs and DO_NOTHING in rocs and GOLD in rocs:
        return record_interval(rocs[GOLD], rocs[DO_NOTHING])
    return t_interval(paired(tables, GOLD, headline, DO_NOTHING))


def _negated(found: Interval) -> Interval:
    return Interval(-found.mean, -found.hi, -found.lo, found.n)


def verdict_metrics(found: Assessment, tables: list[pd.DataFrame],
                    rocs: dict[str, Roc] | None = None) -> dict[str, dict[str, float]]:
    """method -> its paired difference on the headline metric (found.headline) to original and to retrain with the
    95% CI ends (verdict_key), over seeds (the same on each seed's run) or with one seed over the records; and its
    verdict_rank where it has one. A missing interval end is NaN (left out when logged)."""
    rows = found.table[found.table.metric == found.headline].set_index("method")
    move = _gold_move(tables, found.headline, rocs)
    intervals = {DO_NOTHING: (ZERO, _negated(move)), GOLD: (move, ZERO)}
    for method, row in rows.iterrows():
        intervals[method] = (Interval(row.vs_original, row.vs_original_lo, row.vs_original_hi, int(row.seeds)),
                             Interval(row.vs_retrain, row.vs_retrain_lo, row.vs_retrain_hi, int(row.seeds)))
    out = {}
    for method, pair in intervals.items():
        values = {}
        for versus, iv in zip(("original", "retrain"), pair, strict=True):  # 4 decimals: columns to read
            values |= {verdict_key("diff", versus): round(iv.mean, PLACES), verdict_key("ci_low", versus):
                       round(iv.lo, PLACES), verdict_key("ci_high", versus): round(iv.hi, PLACES)}
        rank = found.ranks.get(method, math.nan)
        out[str(method)] = values | ({VERDICT_RANK: float(rank)} if math.isfinite(rank) else {})
    return out


def rounded(values: dict[str, float]) -> dict[str, float]:
    """Metrics as logged: each rounded to the decimals its noise justifies (reporting.tables.decimals), so the UI
    shows 0.4, not float32's 0.40000081; a NaN stays NaN (tracking.log_metrics leaves it out)."""
    return {key: round(float(value), decimals(key)) if math.isfinite(float(value)) else float(value)
            for key, value in values.items()}


def _rounded(value: object, places: int) -> float | None:
    """A number as the table shows it: rounded to what its noise justifies (no 0.99999904); None where missing."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, places) if math.isfinite(number) else None


def summary_table(summary: pd.DataFrame, found: Assessment, metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    """The parent run's table (mlflow.log_table): one row per method in reading order (reporting.verdicts.order):
    rank, verdict, the headline's paired differences with CI ends, the gaps, seconds and speed-up, each rounded."""
    head, places = found.headline, decimals(found.headline)
    rows = []
    for method in order(summary, found):
        numbers, row = metrics.get(method, {}), summary.loc[method]
        rank = numbers.get(VERDICT_RANK)
        rows.append({
            "rank": "" if rank is None else int(rank), "method": method, "verdict": verdict_of(found, method),
            **{f"{head} - {versus}{end}": _rounded(numbers.get(verdict_key(name, versus)), places)
               for versus in ("original", "retrain")
               for name, end in (("diff", ""), ("ci_low", " (CI low)"), ("ci_high", " (CI high)"))},
            **{gap: _rounded(row.get(f"{gap}_mean"), decimals(gap)) for gap in (MU_GAP, UE_GAP, LIRA_AUC_GAP)},
            UNLEARN_SECONDS: _rounded(row.get(f"{UNLEARN_SECONDS}_mean"), decimals(UNLEARN_SECONDS)),
            SPEEDUP: _rounded(row.get(f"{SPEEDUP}_mean"), 1)})
    return pd.DataFrame(rows)


# The saved view's columns (the runs list's keys: `<type>.` + the key in backticks), in reading order; the table
# keeps its groups (attributes, then metrics, then tags), the order applies within each.
VIEW_METRICS = [VERDICT_RANK, *(verdict_key(name, versus) for versus in ("original", "retrain")
                                for name in ("diff", "ci_low", "ci_high"))]
VIEW_COLUMNS = ["attributes.`Models`", *(f"metrics.`{key}`" for key in VIEW_METRICS), "tags.`verdict`"]


def scatter(x: str, y: str, title: str) -> dict:
    """A card of MLflow's chart view (3.17's stored format): one point per run, metric x against metric y."""
    return {"type": "SCATTER", "xaxis": {"key": x, "type": "METRIC"}, "yaxis": {"key": y, "type": "METRIC"},
            "displayName": title, "runsCountToCompare": 100}


def bar(metric: str) -> dict:
    """A card of MLflow's chart view: one bar per run, in the view's order."""
    return {"type": "BAR", "metricKey": metric, "displayName": metric, "runsCountToCompare": 100}


def view_charts(headline: str = "lira_auc") -> dict[str, list[dict]]:
    """The saved view's chart view (section -> cards), before the UI's own chart per metric: MU gap against the
    headline attack's gap (`<headline>_gap`, e.g. lira_auc_gap; one point per method), then the headline's paired
    differences to original and to retrain, each beside its 95% CI ends: MLflow's charts draw no error bars, so
    the interval is the two bars around the difference."""
    attack_gap = f"{headline}_gap"
    return {"Verdicts: gaps to retrain": [scatter(MU_GAP, attack_gap, f"{MU_GAP} against {attack_gap}"),
                                          bar(MU_GAP), bar(attack_gap), bar(UNLEARN_SECONDS)],
            **{f"Verdicts: headline difference to {versus}, 95% CI": [
                bar(verdict_key(name, versus)) for name in ("ci_low", "diff", "ci_high")]
               for versus in ("original", "retrain")}}
