"""Text a reader meets first: the comparison as a markdown table (README, MLflow artifact) and as rows for a
Prefect table artifact, the sentence on what the attacks see, the per-seed tables, the forget-set manifest and a
deletion batch's audit. Pure text from results; publishing it is the tasks' part (tasks/evaluation.py,
tasks/deletion.py)."""

from __future__ import annotations

import re

import pandas as pd

from iau_core.metrics import (
    ATTACK_STRENGTH,
    ATTACK_STRENGTH_AUC,
    AVG_RANK,
    FORGET_ACC,
    LIRA_AUC,
    LIRA_AUC_GAP,
    LIRA_AUC_MATCHED,
    LIRA_STRENGTH,
    LIRA_STRENGTH_TPR,
    LIRA_STRENGTH_TPR_0_1PCT,
    LIRA_TPR,
    MIA_AUC,
    MIA_FORGET_ASR,
    MU_GAP,
    RMIA_AUC,
    RMIA_AUC_GAP,
    RMIA_STRENGTH,
    RMIA_STRENGTH_TPR,
    RMIA_STRENGTH_TPR_0_1PCT,
    RMIA_TPR,
    SPEEDUP,
    TEST_ACC,
    UE_GAP,
    UNLEARN_SECONDS,
    mean_std,
)
from reporting.text import escaped, markdown_cell

# The comparison's columns, in the order a reader weighs them: the gaps to retrain first.
SHOWN = [MU_GAP, UE_GAP, LIRA_AUC_GAP, RMIA_AUC_GAP, UNLEARN_SECONDS, SPEEDUP, AVG_RANK, TEST_ACC, FORGET_ACC,
         MIA_FORGET_ASR, LIRA_AUC, LIRA_TPR, LIRA_AUC_MATCHED, RMIA_AUC, RMIA_TPR, MIA_AUC]
WITHIN, ABOVE = "✓", "✗"
MISSING = "–"


def decimals(metric: str) -> int:
    """Decimals that a metric's noise justifies: AUCs, rates and seconds need 3; accuracies, gaps, attack
    success and ranks are percentage points or ordinals, where 2 is already below the seed-to-seed spread."""
    if any(word in metric for word in ("auc", "seconds", "tpr", "fpr", "quality")):
        return 3
    return 2


def _cell(row: pd.Series, metric: str, floor: float | None, unchanged: bool = False) -> str:
    """'mean ± std' (mean_std), '–' where the metric has no value, plus the noise-floor marker of a gap column;
    a method that returned the deployed model gets '(no change)' instead of a marker: it forgot nothing, however
    close doing nothing happens to be to retrain."""
    mean = row.get(f"{metric}_mean")
    text = mean_std(mean, row.get(f"{metric}_std"), decimals(metric))
    if not text:
        return MISSING
    if floor is not None:
        text += " (no change)" if unchanged else " " + (WITHIN if mean <= floor else ABOVE)
    return text


def _legend(floors: dict[str, float], shown: list[str]) -> str:
    values = ", ".join(f"{metric} {floors[metric]:.{decimals(metric)}f}" for metric in shown)
    return (f"{WITHIN} = mean within the noise floor (≤ the gap between two retrained gold models, retrain_alt "
            f"vs retrain); {ABOVE} = above it. Floors: {values}.")


def summary_markdown(summary: pd.DataFrame, floors: dict[str, float], columns: list[str],
                     unchanged: frozenset[str] | set[str] = frozenset()) -> str:
    """A GitHub-markdown table, one row per method (summary's index), one column per metric in `columns`,
    from summary columns '<metric>_mean' and '<metric>_std'. A gap column ('<x>_gap') with a floor in
    `floors` marks each cell within (✓) or above (✗) the noise floor, except for the `unchanged` methods (those
    that returned the deployed model: '(no change)'); a legend line below gives the floors."""
    marked = [m for m in columns if m.endswith("_gap") and m in floors]
    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for method, row in summary.iterrows():
        cells = [_cell(row, metric, floors.get(metric) if metric in marked else None, method in unchanged)
                 for metric in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    return table + ("\n" + _legend(floors, marked) + "\n" if marked else "")


def artifact_key(key: str) -> str:
    """Prefect artifact keys must match ^[a-z0-9-]*$ (prefect.types.names.ArtifactKey): lowercase, and every
    run of other characters becomes one dash ('IAU comparison_v2' -> 'iau-comparison-v2')."""
    clean = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    if not clean:
        raise ValueError(f"artifact key {key!r} has no letters or digits")
    return clean


def comparison_records(summary: pd.DataFrame, columns: list[str], verdicts: pd.Series | None = None) -> list[dict]:
    """One row per method, each metric as 'mean ± std' to the decimals its noise justifies (after the method's
    verdict, when given): the rows of the comparison's table artifact."""
    def verdict(m: str) -> dict:
        return {} if verdicts is None else {"verdict": str(verdicts.get(m, ""))}
    return [{"method": m, **verdict(m), **{c: mean_std(summary.loc[m, f"{c}_mean"], summary.loc[m, f"{c}_std"],
                                                       decimals(c)) for c in columns}} for m in summary.index]


def _calibrated_seen(name: str, strength: dict[str, float], auc: str, tpr: str, tpr_0_1pct: str) -> str:
    """'LiRA AUC 0.612, TPR at 1% FPR 3.2%, at 0.1% FPR 0.4%; ' (the 0.1% point where the strengths have it)."""
    low = f", at 0.1% FPR {100 * strength[tpr_0_1pct]:.1f}%" if tpr_0_1pct in strength else ""
    return f"{name} AUC {strength[auc]:.3f}, TPR at 1% FPR {100 * strength[tpr]:.1f}%{low}; "


def what_attacks_see(strength: dict[str, float]) -> str:
    """One sentence on how much membership the attacks see at all, so no gap is read as more than it is."""
    return ("What the attacks see on the original model (all of D against held-out records; chance: AUC 0.5, "
            "TPR 1% at 1% FPR and 0.1% at 0.1% FPR, 50% balanced accuracy): "
            + _calibrated_seen("LiRA", strength, LIRA_STRENGTH, LIRA_STRENGTH_TPR, LIRA_STRENGTH_TPR_0_1PCT)
            + (_calibrated_seen("RMIA", strength, RMIA_STRENGTH, RMIA_STRENGTH_TPR, RMIA_STRENGTH_TPR_0_1PCT)
               if RMIA_STRENGTH in strength else "")
            + "shadow attack balanced accuracy "
            f"{strength[ATTACK_STRENGTH]:.1f}%, AUC {strength[ATTACK_STRENGTH_AUC]:.3f}.")


def manifest(forget_sets: dict[int, list[int]]) -> str:
    """The forget-set manifest: one line per (seed, sample_id)."""
    lines = ["seed,sample_id"] + [f"{seed},{i}" for seed, ids in forget_sets.items() for i in ids]
    return "\n".join(lines) + "\n"


def audit_report(audit: dict, shown: int | None = None, rest: str = "") -> str:
    """The batch's audit as Markdown: what a person reads when asked when and how a record was removed. `shown`
    caps the request list (a Prefect artifact of 1,000 ids is unreadable), `rest` says where the others are."""
    lines = [f"# Deletion batch {audit['batch_id']}", "",
             f"- outcome: **{audit['outcome']}**; method: {audit['method']}",
             f"- model: {audit['parent_model_version']} -> {audit['model_version']}",
             f"- data: {audit['parent_data_version']} -> {audit['data_version']}",
             f"- MLflow run: {audit['mlflow_run_id']}; Prefect flow run: {audit['prefect_flow_run_id']}"]
    if audit.get("escalation"):
        lines.append(f"- escalated: {escaped(audit['escalation'])}")
    if audit.get("resumed"):
        lines.append("- resumed after an interrupted run (steps of both runs below)")
    for name, result in audit["gates"].items():
        privacy = result.get("privacy_verdict")
        if result["passed"]:
            verdict = "passed"
        elif privacy == "inconclusive" and result.get("utility_ok", False):
            verdict = "; ".join(result["reasons"])  # each reason already says "privacy inconclusive: ..."
        else:
            verdict = "failed: " + "; ".join(result["reasons"])
        lines += ["", f"## Gate for {name}: {verdict}", "", "| number | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
                  for key, value in result.items() if key not in ("passed", "reasons")]
    lines += ["", "## Steps (seconds)", "", "| step | seconds |", "| --- | --- |"]
    lines += [f"| {step} | {seconds:.2f} |" for step, seconds in audit["steps"].items()]
    requests = audit["requests"]
    capped = shown is not None and len(requests) > shown
    lines += ["", f"## Requests ({len(requests)}" + (f", the first {shown} shown)" if capped else ")"), "",
              "| sample_id | tier | reason | requested_at |", "| --- | --- | --- | --- |"]
    # reasons are stored as typed: a `|` or a newline in one must stay inside its cell
    lines += [f"| {r['sample_id']} | {r['tier']} | {markdown_cell(r['reason'])} | {r['requested_at']} |"
              for r in (requests[:shown] if capped else requests)]
    if capped:
        lines += ["", f"{len(requests) - shown} more: {rest}"]
    return "\n".join(lines) + "\n"
