"""The answer first: which method forgot, at what cost, with its confidence interval. Text for comparison.md (a
compact table first, the details after), the terminal, and the MLflow runs' descriptions. Pure text from a
verdicts.Assessment and the summary; publishing it is the tasks' part (tasks/evaluation.py)."""

from __future__ import annotations

import math

import pandas as pd

from iau_core.config import DO_NOTHING, FLOOR, GOLD, REFERENCE_METHODS
from iau_core.metrics import (
    FORGET_ACC,
    LIRA_AUC_GAP,
    MU_GAP,
    SPEEDUP,
    TEST_ACC,
    UE_GAP,
    UNLEARN_SECONDS,
    mean_std,
)
from iau_core.verdicts import NO_CHANGE, NO_INTERVAL, RECORDS, SEEDS, VERDICTS, Assessment, Interval
from reporting.tables import ABOVE, MISSING, WITHIN, decimals

GAP_COLUMNS = [MU_GAP, UE_GAP, LIRA_AUC_GAP]
LABELS = {MU_GAP: "MU gap", UE_GAP: "UE gap", LIRA_AUC_GAP: "LiRA gap", UNLEARN_SECONDS: "seconds",
          SPEEDUP: "× faster than retrain", TEST_ACC: "test acc", FORGET_ACC: "D_f acc"}


def order(summary: pd.DataFrame, found: Assessment) -> list[str]:
    """Ranked methods first (by rank), then the others by verdict (forgets, overshoots, ... no change), then the
    references: the order a reader scans for the answer."""
    compared = [m for m in summary.index if m not in REFERENCE_METHODS]
    ranked = sorted((m for m in compared if math.isfinite(found.ranks.get(m, math.nan))), key=lambda m: found.ranks[m])
    rest = sorted((m for m in compared if m not in ranked),
                  key=lambda m: (VERDICTS.index(found.verdicts.get(m, NO_CHANGE)), m))
    return ranked + rest + [m for m in (FLOOR, DO_NOTHING, GOLD) if m in summary.index]


def interval(found: Assessment, method: str, versus: str, metric: str | None = None) -> Interval:
    rows = found.table[(found.table.method == method) & (found.table.metric == (metric or found.headline))]
    if rows.empty:
        return Interval(math.nan, math.nan, math.nan, 0)
    row = rows.iloc[0]
    return Interval(row[f"vs_{versus}"], row[f"vs_{versus}_lo"], row[f"vs_{versus}_hi"], int(row["seeds"]))


def _gap(summary: pd.DataFrame, method: str, gap: str, floors: dict[str, float], unchanged: bool) -> str:
    mean = summary.loc[method].get(f"{gap}_mean")
    text = mean_std(mean, summary.loc[method].get(f"{gap}_std"), decimals(gap))
    if not text:
        return MISSING
    if method in (GOLD, DO_NOTHING) or gap not in floors or unchanged:
        return text  # retrain is 0 by definition; doing nothing and a kept model have nothing to mark
    return f"{text} {WITHIN if mean <= floors[gap] + 1e-12 else ABOVE}"


def _verdict(found: Assessment, method: str) -> str:
    if method == DO_NOTHING:
        return "(doing nothing)"
    if method == GOLD:
        return "(gold model)"
    verdict = found.verdicts.get(method, MISSING)
    return f"{verdict} (noise-floor check)" if method == FLOOR else verdict


def compact_markdown(summary: pd.DataFrame, floors: dict[str, float], found: Assessment) -> str:
    """One row per method: rank, verdict on the headline attack with its paired 95% CIs against original and
    retrain, the three gaps with their floor marks, seconds and speed-up."""
    head = found.headline
    lines = [f"| rank | method | verdict | {head} − original [95% CI] | {head} − retrain [95% CI] | "
             + " | ".join(LABELS[g] for g in GAP_COLUMNS) + " | seconds | × faster |",
             "| ---: | --- | --- | ---: | ---: |" + " ---: |" * (len(GAP_COLUMNS) + 2)]
    for method in order(summary, found):
        rank = found.ranks.get(method, math.nan)
        unchanged = found.verdicts.get(method) == NO_CHANGE
        vs_orig = {DO_NOTHING: "–", GOLD: _gold_move(found)}.get(method) or interval(found, method, "original").text()
        vs_gold = "–" if method == GOLD else interval(found, method, "retrain").text()
        row = summary.loc[method]
        speed = row.get(f"{SPEEDUP}_mean")
        cells = [f"{int(rank)}" if math.isfinite(rank) else "", method, f"**{_verdict(found, method)}**",
                 vs_orig, vs_gold, *[_gap(summary, method, g, floors, unchanged) for g in GAP_COLUMNS],
                 mean_std(row.get(f"{UNLEARN_SECONDS}_mean"), None, 3) or MISSING,
                 f"{speed:.1f}" if isinstance(speed, float) and math.isfinite(speed) else MISSING]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _gold_move(found: Assessment) -> str:
    """How far retrain itself is from original on the headline metric: what there is to forget."""
    rows = found.table[(found.table.method == FLOOR) & (found.table.metric == found.headline)]
    if rows.empty:
        return "–"
    row = rows.iloc[0]  # retrain_alt - original, minus retrain_alt - retrain = retrain - original, per seed mean
    return f"{row.vs_original - row.vs_retrain:+.3f}"


def basis_text(basis: str, seeds: int) -> str:
    """What the 95% intervals are taken over, in words."""
    return {SEEDS: f"95% CI over {seeds} seeds", RECORDS: "one seed: 95% CI over D_f's and the held-out records"
            }.get(basis, "one seed: no CI")


def answer(found: Assessment, summary: pd.DataFrame) -> str:
    """The one sentence a newcomer asks for: which method forgot best, at what cost."""
    ci = basis_text(found.basis, found.seeds)
    if found.best:
        row = summary.loc[found.best]
        speed = row.get(f"{SPEEDUP}_mean")
        cost = f"{row[f'{UNLEARN_SECONDS}_mean']:.2f} s" + (
            f", {speed:.1f}× faster than retraining" if isinstance(speed, float) and math.isfinite(speed) else "")
        lead = (f"**Best method within every noise floor: {found.best}** ({cost}; {found.headline} − original "
                f"{interval(found, found.best, 'original').text()}, {ci}).")
        if found.basis == NO_INTERVAL:
            lead = (f"**Fastest method that changed the model and is within every noise floor: {found.best}** "
                    f"({cost}; {ci}, so whether it forgot is not known).")
    else:
        lead = f"**No method both forgets ({found.headline}, {ci}) and stays within every noise floor.**"
    compared = found.verdicts.drop(index=[FLOOR], errors="ignore")
    tally = "; ".join(f"{v}: {', '.join(sorted(compared[compared == v].index))}"
                      for v in VERDICTS if (compared == v).any())
    return f"{lead} Verdicts on {found.headline}: {tally}."


def warnings_markdown(found: Assessment) -> str:
    return "".join(f"> **Read with care:** {w}.\n" for w in found.warnings)


def legend(found: Assessment, floors: dict[str, float]) -> str:
    values = ", ".join(f"{LABELS.get(g, g)} {floors[g]:.{decimals(g)}f}" for g in GAP_COLUMNS if g in floors)
    over = ("the per-seed paired differences to original and to retrain and their 95% t-intervals"
            if found.basis != RECORDS else "the paired differences to original and to retrain on the same records, "
            "with 95% bootstrap intervals over D_f's and the held-out records (one seed: they say this model moved, "
            "not that another training run would)")
    return (f"Verdict on {found.headline} (the attack's AUC on D_f against held-out records), from {over}: "
            "**forgets** = moved from "
            "original toward retrain (CI excludes 0); **overshoots** = moved past retrain (CI against retrain excludes "
            "0 on the far side); **no detectable change** = CI against original contains 0; **no change** = the "
            "method returned the deployed model (0 epochs kept or eta 0) and is never ranked or marked "
            f"{WITHIN}. rank: methods that forget, those within every floor first, fastest first. {WITHIN}/{ABOVE}: "
            f"mean gap within/above the noise floor (retrain_alt's gap to retrain: {values}). The retrain row's "
            f"first interval column is retrain − original: what there is to forget.")


def details_markdown(found: Assessment) -> str:
    """Every judged metric: method − original and method − retrain with 95% CIs, and the verdict on it."""
    lines = ["| method | metric | − original [95% CI] | − retrain [95% CI] | verdict |",
             "| --- | --- | ---: | ---: | --- |"]
    for _, row in found.table.iterrows():
        places = decimals(row.metric)
        orig = Interval(row.vs_original, row.vs_original_lo, row.vs_original_hi, int(row.seeds)).text(places)
        gold = Interval(row.vs_retrain, row.vs_retrain_lo, row.vs_retrain_hi, int(row.seeds)).text(places)
        lines.append(f"| {row.method} | {row.metric} | {orig} | {gold} | {row.verdict} |")
    return "\n".join(lines) + "\n"


def comparison_document(title: str, summary: pd.DataFrame, floors: dict[str, float], found: Assessment,
                        full_table: str, attacks_see: str) -> str:
    """comparison.md: the answer, the warnings, the compact table and its legend; then the full table (every
    metric, mean ± std) and the per-metric intervals."""
    return (f"# {title}\n\n{answer(found, summary)}\n\n{warnings_markdown(found)}\n"
            f"{compact_markdown(summary, floors, found)}\n{legend(found, floors)}\n\n{attacks_see}\n\n"
            f"## Details: every metric (mean ± std over seeds)\n\n{full_table}\n"
            f"## Details: paired differences per metric\n\n{details_markdown(found)}")


def parent_description(title: str, summary: pd.DataFrame, floors: dict[str, float], found: Assessment,
                       attacks_see: str) -> str:
    """The parent run's description (the run page's top): the answer and the compact table."""
    return (f"**{title}.** {answer(found, summary)}\n\n{warnings_markdown(found)}\n"
            f"{compact_markdown(summary, floors, found)}\n{attacks_see} Details: artifact comparison.md.")


def child_description(method: str, seed: int, table: pd.DataFrame, found: Assessment) -> str:
    """One line for a method's run: what it did on this seed, against original and retrain, and its verdict."""
    head = found.headline
    row, orig, gold = table.loc[method], table.loc[DO_NOTHING], table.loc[GOLD]
    verdict = _verdict(found, method) if method not in (DO_NOTHING, GOLD) else {
        DO_NOTHING: "the deployed model (doing nothing)", GOLD: "the gold model, retrained without D_f"}[method]
    return (f"**{method}**, seed {seed}: {head} on D_f {row[head]:.3f} (original {orig[head]:.3f}, retrain "
            f"{gold[head]:.3f}); test acc {row[TEST_ACC]:.2f}% (retrain {gold[TEST_ACC]:.2f}%); "
            f"{row[UNLEARN_SECONDS]:.2f} s. Verdict over all seeds: **{verdict}**.")


def printed(summary: pd.DataFrame) -> str:
    """The terminal's table, from a summary joined with Assessment.wide() (what the flow returns): rank, verdict,
    the headline metric's paired 95% CI against original, the gaps with their floor marks, and seconds."""
    if "verdict" not in summary.columns:
        return summary.to_string()
    head = str(summary["verdict_metric"].dropna().iloc[0])
    floors = {g: float(summary.loc[FLOOR, f"{g}_mean"]) for g in GAP_COLUMNS
              if FLOOR in summary.index and f"{g}_mean" in summary.columns}
    ranked = summary["verdict_rank"].dropna().sort_values().index.tolist()
    rest = [m for m in summary.index if m not in ranked and m not in REFERENCE_METHODS]
    rest.sort(key=lambda m: VERDICTS.index(summary.loc[m, "verdict"]) if summary.loc[m, "verdict"] in VERDICTS else 99)
    rows = {}
    for method in ranked + rest + [m for m in (FLOOR, DO_NOTHING, GOLD) if m in summary.index]:
        row = summary.loc[method]
        ci = Interval(row.get(f"{head}_vs_original", math.nan), row.get(f"{head}_vs_original_lo", math.nan),
                      row.get(f"{head}_vs_original_hi", math.nan), 0)
        verdict = {DO_NOTHING: "(doing nothing)", GOLD: "(gold model)"}.get(method, row.get("verdict"))
        rank = row.get("verdict_rank", math.nan)
        rows[method] = {"rank": f"{int(rank)}" if isinstance(rank, float) and math.isfinite(rank) else "",
                        "verdict": verdict if isinstance(verdict, str) else "",
                        f"{head}-original [95% CI]": "" if method in (DO_NOTHING, GOLD) else ci.text(),
                        **{LABELS[g]: _gap(summary, method, g, floors, verdict == NO_CHANGE) for g in GAP_COLUMNS
                           if f"{g}_mean" in summary.columns},
                        "seconds": mean_std(row.get(f"{UNLEARN_SECONDS}_mean"), None, 3)}
    basis = summary["verdict_basis"].dropna().iloc[0] if "verdict_basis" in summary.columns else SEEDS
    over = {RECORDS: "one seed, so paired 95% bootstrap intervals over D_f's and the held-out records",
            NO_INTERVAL: "one seed, no intervals"}.get(basis, "paired 95% t-intervals over seeds")
    return (f"{pd.DataFrame(rows).T.to_string()}\n(verdict on {head}: {over}; rank: "
            f"methods that forget, within every floor first, fastest first; {WITHIN}/{ABOVE}: within/above "
            f"retrain_alt's noise floor)")
