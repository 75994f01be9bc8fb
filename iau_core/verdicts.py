"""Did a method forget? Paired comparisons over seeds, with 95% confidence intervals, and one verdict per method.

Each seed scores every method on the same D_f and held-out records, so a method's per-seed difference to
`original` (did it move at all?) and to `retrain` (how far from the gold model?) are paired: the seed-to-seed
spread of the models cancels, and a t-interval on the differences is the honest interval (Student's t with
n - 1 degrees of freedom). With one seed there is no spread over training runs to estimate; the headline attack's
interval is then a paired bootstrap over D_f's and the held-out records (record_interval), which says whether this
model moved, and is labelled so. Without per-record scores the interval is "n/a", never invented.

Verdicts, on one metric (a score measured on D_f: an attack's AUC, the attack success, the accuracy on D_f):
- "no change": the method returned the deployed model unchanged (it kept 0 epochs, or its step was eta = 0);
- "no detectable change": the 95% CI of (method - original) contains 0;
- "forgets": it moved from original in retrain's direction, and is not beyond retrain by more than the CI;
- "overshoots": it moved past retrain, the CI of (method - retrain) excluding 0 on the far side (the Streisand
  effect: records look *less* like members than never-seen ones do, which is itself visible to an attacker);
- "moves away": it moved, but away from retrain;
- "n/a (one seed)": one seed and no per-record scores: it moved or not, nothing can say.
A method's verdict is the one on the headline metric (HEADLINE). Pure: numbers in, numbers and words out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iau_core.attacks.roc import Roc
from iau_core.config import DO_NOTHING, FLOOR, GOLD, REFERENCE_METHODS
from iau_core.intervals import Interval, RecordDraws, record_interval, t_interval
from iau_core.metrics import GAPS, LIRA_AUC, TEST_ACC, UNLEARN_SECONDS

# The metrics judged: every metric on D_f that a gap to retrain is taken on (metrics.GAPS: the shadow attack's
# success, LiRA's AUC, and whatever attack joins GAPS later); test accuracy is utility, judged by the MU gap and its
# floor, not forgetting. One list, so a new attack joins the verdicts by adding its gap to GAPS.
JUDGED: tuple[str, ...] = tuple(m for m in GAPS.values() if m != TEST_ACC)
# The metric a method's verdict is read on: the strongest attack's AUC on D_f against held-out records.
HEADLINE = LIRA_AUC

# What a confidence interval is taken over: seeds (a t-interval), or with one seed the records (record_interval).
SEEDS, RECORDS, NO_INTERVAL = "seeds", "records", "none"

NO_CHANGE, UNDETECTED, FORGETS, OVERSHOOTS, AWAY, ONE_SEED = (
    "no change", "no detectable change", "forgets", "overshoots", "moves away", "n/a (one seed)")
VERDICTS = (FORGETS, OVERSHOOTS, AWAY, UNDETECTED, NO_CHANGE, ONE_SEED)  # the order a reader wants them in

# Below these, the noise floors and the verdicts are not worth reading (issue 16, item 6): an AUC on fewer
# than 50 members has a standard error of about 0.04 (Hanley & McNeil), as large as any gap seen here; with
# fewer than 200 validation records, one record is half a point of the 1-point validation budget.
MIN_FORGET_RECORDS = 50
MIN_VAL_RECORDS = 200




def judge(to_original: Interval, to_retrain: Interval, direction: float, unchanged: bool = False) -> str:
    """One method on one metric. `direction`: mean of (retrain - original), the way forgetting moves the metric."""
    if unchanged:
        return NO_CHANGE
    if not to_original.known:
        return ONE_SEED
    if not to_original.excludes_zero():
        return UNDETECTED
    toward = direction != 0 and np.sign(to_original.mean) == np.sign(direction)
    if not toward:
        return AWAY
    if to_retrain.excludes_zero() and np.sign(to_retrain.mean) == np.sign(direction):
        return OVERSHOOTS
    return FORGETS


def unchanged_methods(choices: dict[str, dict]) -> set[str]:
    """Methods whose own record says they returned the deployed model: 0 epochs kept (the stop rule undid every
    epoch) or a step of eta = 0 (no step within the validation budget). `choices`: method -> its choices."""
    return {m for m, c in choices.items() if m not in REFERENCE_METHODS and
            (_is_zero(c.get("epochs_kept")) or _is_zero(c.get("eta_chosen")))}


def _is_zero(value: object) -> bool:
    try:
        return value is not None and float(value) == 0.0
    except (TypeError, ValueError):
        return False


def paired(tables: list[pd.DataFrame], method: str, metric: str, reference: str) -> np.ndarray:
    """Per seed, metric(method) - metric(reference), from per-seed tables indexed by method."""
    return np.array([t.loc[method, metric] - t.loc[reference, metric] for t in tables
                     if method in t.index and reference in t.index and metric in t.columns], dtype=float)


def verdict_table(tables: list[pd.DataFrame], unchanged: dict[str, bool] | set[str] = frozenset(),
                  metrics: tuple[str, ...] = JUDGED,
                  by_records: dict[tuple[str, str], tuple[Interval, Interval]] | None = None) -> pd.DataFrame:
    """One row per (method, metric) of every non-reference method: the paired differences to original and to
    retrain (mean and 95% CI over seeds) and the verdict. `unchanged`: methods that returned the deployed model
    on every seed (their verdict is "no change" whatever the numbers say). `by_records`: (method, metric) -> the
    one-seed intervals over records (record_interval) to original and to retrain, used where seeds give none."""
    unchanged = {m for m in unchanged if (unchanged[m] if isinstance(unchanged, dict) else True)}
    by_records = by_records or {}
    methods = [m for m in tables[0].index if m not in (DO_NOTHING, GOLD)]
    rows = []
    for metric in [m for m in metrics if m in tables[0].columns]:
        direction = float(np.nanmean(paired(tables, GOLD, metric, DO_NOTHING)))
        for method in methods:
            orig = t_interval(paired(tables, method, metric, DO_NOTHING))
            gold = t_interval(paired(tables, method, metric, GOLD))
            basis = SEEDS if orig.known else NO_INTERVAL
            if not orig.known and (method, metric) in by_records:
                (orig, gold), basis = by_records[(method, metric)], RECORDS
            rows.append({"method": method, "metric": metric, "vs_original": orig.mean, "vs_original_lo": orig.lo,
                         "vs_original_hi": orig.hi, "vs_retrain": gold.mean, "vs_retrain_lo": gold.lo,
                         "vs_retrain_hi": gold.hi, "seeds": orig.n, "interval": basis,
                         "verdict": judge(orig, gold, direction, method in unchanged)})
    return pd.DataFrame(rows)


def method_verdicts(table: pd.DataFrame, headline: str = HEADLINE) -> pd.Series:
    """Each method's verdict: the one on the headline metric (retrain_alt, the floor, included as a check: a
    second gold model should "forget" like retrain)."""
    rows = table[table.metric == headline]
    return pd.Series(rows.verdict.to_numpy(), index=rows.method.to_numpy(), name="verdict")


def best_method(summary: pd.DataFrame, verdicts: pd.Series, floors: dict[str, float]) -> str | None:
    """The fastest method that forgets (or whose one seed moved: see `ranked`) and is within every noise floor;
    None when there is none."""
    ranked = verdict_rank(summary, verdicts, floors)
    within = ranked[ranked.notna()]
    if within.empty:
        return None
    first = within.idxmin()
    return str(first) if all_within(summary.loc[first], floors) else None


def all_within(row: pd.Series, floors: dict[str, float]) -> bool:
    return all(row.get(f"{gap}_mean", float("inf")) <= floor + 1e-12 for gap, floor in floors.items())


def verdict_rank(summary: pd.DataFrame, verdicts: pd.Series, floors: dict[str, float]) -> pd.Series:
    """A rank (1 = best) only for the methods that forget: first those within every noise floor, then the others,
    each group fastest first. A method with no detectable change, no change, overshooting or moving away is not
    ranked (NaN): a fast method that forgot nothing must not head the list. With one seed no method has a
    verdict; those that changed the model are ranked the same way, so a one-seed run still orders them."""
    # No interval anywhere in the run (one seed): "no change" methods are no verdict, so they must not hide it.
    one_seed = (verdicts == ONE_SEED).any() and verdicts.isin([ONE_SEED, NO_CHANGE]).all()
    eligible = [m for m in verdicts.index if m != FLOOR and m in summary.index
                and (verdicts[m] == FORGETS or (one_seed and verdicts[m] == ONE_SEED))]
    key = sorted(eligible, key=lambda m: (not all_within(summary.loc[m], floors),
                                          summary.loc[m].get(f"{UNLEARN_SECONDS}_mean", float("inf"))))
    return pd.Series({m: float(i + 1) for i, m in enumerate(key)}, dtype=float).reindex(summary.index)


def small_roles(forget_records: int | None, val_records: int | None) -> list[str]:
    """Why the floors and verdicts mean little on this data, one phrase per role that is too small."""
    found = []
    if forget_records is not None and forget_records < MIN_FORGET_RECORDS:
        found.append(f"D_f has {forget_records} records (< {MIN_FORGET_RECORDS}: an AUC on it moves by about "
                     f"{0.29 / math.sqrt(max(forget_records, 1)):.2f} from sampling alone)")
    if val_records is not None and val_records < MIN_VAL_RECORDS:
        found.append(f"validation has {val_records} records (< {MIN_VAL_RECORDS}: one record is "
                     f"{100 / max(val_records, 1):.1f} accuracy points of the stop rule's budget)")
    return found


def floors_blind(summary: pd.DataFrame, floors: dict[str, float]) -> bool:
    """True when doing nothing is itself within every noise floor: the floors then cannot tell forgetting from
    not forgetting, and a ✓ says nothing."""
    return DO_NOTHING in summary.index and all_within(summary.loc[DO_NOTHING], floors)


@dataclass(frozen=True)
class Assessment:
    """Everything a reader needs to say which method forgot: the per-(method, metric) intervals and verdicts,
    each method's verdict and rank, the best method within every floor, and why the floors may mean little."""

    table: pd.DataFrame  # verdict_table
    verdicts: pd.Series  # method -> verdict on HEADLINE
    ranks: pd.Series  # method -> verdict_rank (NaN: not ranked)
    best: str | None
    seeds: int
    unchanged: dict[str, int]  # method -> seeds on which it returned the deployed model
    warnings: list[str]
    headline: str = HEADLINE
    basis: str = SEEDS  # what the headline's intervals are over: SEEDS, RECORDS (one seed) or NO_INTERVAL

    def wide(self) -> pd.DataFrame:
        """One row per method: '<metric>_vs_original', '_lo', '_hi', '<metric>_vs_retrain', ..., '<metric>_verdict',
        and the method's verdict and rank: the columns comparison.csv gains."""
        parts = []
        for metric, rows in self.table.groupby("metric", sort=False):
            rows = rows.set_index("method").drop(columns=["metric", "seeds"])
            parts.append(rows.add_prefix(f"{metric}_"))
        out = pd.concat(parts, axis=1) if parts else pd.DataFrame()
        return out.assign(verdict=self.verdicts, verdict_rank=self.ranks.reindex(out.index),
                          verdict_metric=self.headline, verdict_basis=self.basis)


def assess(tables: list[pd.DataFrame], summary: pd.DataFrame, floors: dict[str, float],
           kept: dict[str, list[bool]] | None = None, forget_records: int | None = None,
           val_records: int | None = None, metrics: tuple[str, ...] = JUDGED, headline: str = HEADLINE,
           rocs: dict[str, Roc] | None = None) -> Assessment:
    """`tables`: the per-seed comparisons (index: method); `kept`: method -> per seed, whether the method returned
    the deployed model (unchanged_methods on each seed's choices). A method that kept it on every seed, or whose
    every judged score equals original's on every seed, is "no change". `rocs`: with one seed, each method's
    ROC of the headline attack on D_f with its per-record scores: the headline's intervals are then taken over
    the records (record_interval), so a one-seed run still has verdicts."""
    kept = kept or {}
    judged = [m for m in metrics if m in tables[0].columns]
    unchanged = {m: sum(flags) for m, flags in kept.items() if any(flags)}
    for method in tables[0].index:
        if method not in REFERENCE_METHODS and judged and all(
                np.all(paired(tables, method, metric, DO_NOTHING) == 0) for metric in judged):
            unchanged[method] = len(tables)
    if headline not in judged:
        headline = judged[0] if judged else headline
    by_records = records_intervals(rocs, headline) if len(tables) == 1 and rocs else {}
    table = verdict_table(tables, {m: n == len(tables) for m, n in unchanged.items()}, metrics, by_records)
    basis = SEEDS if len(tables) > 1 else RECORDS if by_records else NO_INTERVAL
    verdicts = method_verdicts(table, headline)
    ranks = verdict_rank(summary, verdicts, floors)
    warnings = small_roles(forget_records, val_records)
    if floors_blind(summary, floors):
        warnings.append("doing nothing (original) is itself within every noise floor: here the floors cannot tell "
                        "forgetting from not forgetting, so a ✓ says nothing")
    if len(tables) > 1 and verdicts.get(FLOOR) == UNDETECTED:
        warnings.append(f"retrain_alt, a second gold model, shows no detectable change from original on {headline}: "
                        "there is little membership visible to forget here, so read 'forgets' with care")
    if basis == RECORDS and verdicts.get(FLOOR) not in (None, FORGETS, NO_CHANGE):
        warnings.append(f"retrain_alt, a second gold model, is itself judged '{verdicts[FLOOR]}' on these record "
                        "intervals: two equally valid retrainings differ by more than the records' sampling noise, "
                        "so with one seed 'overshoots' and 'moves away' mean 'differs from this retrain by more than "
                        "record noise', not 'forgot badly'")
    if basis == RECORDS:
        warnings.append("one seed: the intervals are over D_f's and the held-out records only, so a verdict says "
                        "this model moved, not that every training run would (run several seeds for that, e.g. "
                        "SEEDS=\"0 1 2 3 4\")")
    elif basis == NO_INTERVAL:
        warnings.append("one seed: no confidence interval and no verdict (run several seeds, e.g. SEEDS=\"0 1 2 3 4\")")
    partly = {m: n for m, n in unchanged.items() if n < len(tables)}
    if partly:
        warnings.append("returned the deployed model on some seeds: " +
                        ", ".join(f"{m} ({n} of {len(tables)})" for m, n in sorted(partly.items())))
    return Assessment(table, verdicts, ranks, best_method(summary, verdicts, floors), len(tables), unchanged,
                      warnings, headline, basis)


def records_intervals(rocs: dict[str, Roc], headline: str) -> dict[tuple[str, str], tuple[Interval, Interval]]:
    """(method, headline) -> its record intervals to original and to retrain (record_interval), for every method
    with a ROC: one set of draws for all of them, each model's AUCs over it computed once."""
    if DO_NOTHING not in rocs or GOLD not in rocs:
        return {}
    first = rocs[DO_NOTHING]
    draws = RecordDraws(len(first.members), len(first.nonmembers)) if first.members is not None else None
    aucs = {method: draws.aucs(roc) for method, roc in rocs.items() if draws and roc.members is not None}

    def to(method: str, ref: str) -> Interval:
        if method not in aucs or ref not in aucs:  # no per-record scores: the difference, no interval
            return record_interval(rocs[method], rocs[ref])
        return draws.interval(aucs[method], aucs[ref], rocs[method].auc - rocs[ref].auc)

    return {(method, headline): (to(method, DO_NOTHING), to(method, GOLD))
            for method in rocs if method not in (DO_NOTHING, GOLD)}
