"""The one place that knows the metric names of docs/metrics.md and how each number is computed."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from iau_core.attacks import Attacks, Roc, label_matched
from iau_core.config import DO_NOTHING, FLOOR, GOLD, REFERENCE_METHODS, calibrated_attacks
from iau_core.data import Split
from iau_core.training import accuracy

# Keys of docs/metrics.md's tables (a contract: scripts query MLflow by these names).
TEST_ACC, RETAIN_ACC, FORGET_ACC = "test_acc", "retain_acc", "forget_acc"
MU_GAP, UE_GAP, LIRA_AUC_GAP = "mu_gap", "ue_gap", "lira_auc_gap"
MIA_FORGET_ASR, SHADOW_AUC = "mia_forget_asr", "shadow_auc"
MIA_AUC, TPR_AT_1PCT_FPR = "mia_auc", "tpr_at_1pct_fpr"
LIRA_AUC, LIRA_TPR = "lira_auc", "lira_tpr_at_1pct_fpr"
LIRA_AUC_MATCHED, LIRA_TPR_MATCHED = "lira_auc_label_matched", "lira_tpr_at_1pct_fpr_label_matched"
RMIA_AUC, RMIA_TPR, RMIA_AUC_GAP = "rmia_auc", "rmia_tpr_at_1pct_fpr", "rmia_auc_gap"
# Carlini et al. 2022's low-FPR operating point (Roc.tpr_at_0_1pct_fpr), beside the 1% one.
LIRA_TPR_0_1PCT, RMIA_TPR_0_1PCT = "lira_tpr_at_0_1pct_fpr", "rmia_tpr_at_0_1pct_fpr"
UNLEARN_SECONDS, SPEEDUP, AVG_RANK = "unlearn_seconds", "speedup_vs_retrain", "avg_rank"
# On the parent run: what the attacks can see at all, on the original model (all of D against held-out data).
ATTACK_STRENGTH, ATTACK_STRENGTH_AUC = "attack_strength", "attack_strength_auc"
LIRA_STRENGTH, LIRA_STRENGTH_TPR = "lira_strength", "lira_strength_tpr_at_1pct_fpr"
RMIA_STRENGTH, RMIA_STRENGTH_TPR = "rmia_strength", "rmia_strength_tpr_at_1pct_fpr"
LIRA_STRENGTH_TPR_0_1PCT = "lira_strength_tpr_at_0_1pct_fpr"
RMIA_STRENGTH_TPR_0_1PCT = "rmia_strength_tpr_at_0_1pct_fpr"


# Every per-record calibrated attack (lira, rmia, ...) writes the same family of keys, named after it.
def auc_key(attack: str) -> str:
    return f"{attack}_auc"


def tpr_key(attack: str) -> str:
    return f"{attack}_tpr_at_1pct_fpr"


def tpr_0_1pct_key(attack: str) -> str:
    return f"{attack}_tpr_at_0_1pct_fpr"


def gap_key(attack: str) -> str:
    return f"{attack}_auc_gap"


def strength_key(attack: str) -> str:
    return f"{attack}_strength"


def matched(key: str) -> str:
    return f"{key}_label_matched"


CALIBRATED = calibrated_attacks()
RANKED = (MU_GAP, UNLEARN_SECONDS, UE_GAP)
# gap key -> the metric it compares
GAPS = {MU_GAP: TEST_ACC, UE_GAP: MIA_FORGET_ASR, **{gap_key(a): auc_key(a) for a in CALIBRATED}}
COLUMNS = [MU_GAP, UNLEARN_SECONDS, UE_GAP, *(gap_key(a) for a in CALIBRATED), AVG_RANK, SPEEDUP, TEST_ACC,
           RETAIN_ACC, FORGET_ACC, MIA_FORGET_ASR, SHADOW_AUC,
           *(k for a in CALIBRATED for k in (auc_key(a), tpr_key(a), tpr_0_1pct_key(a), matched(auc_key(a)),
                                             matched(tpr_key(a)), matched(tpr_0_1pct_key(a)))),
           MIA_AUC, TPR_AT_1PCT_FPR]


@dataclass(frozen=True)
class EvalSets:
    """What a model is scored on. Every attack compares D_f with all held-out test records (hundreds, so 1%
    FPR is a real operating point; 0.1% is one only from 1,000 on, below that it reads the TPR at FPR 0), and LiRA
    also with test records drawn to match D_f's labels."""

    retain: Split
    forget: Split
    test: Split
    matched_nonmembers: Split


def make_eval_sets(retain: Split, forget: Split, test: Split, seed: int) -> EvalSets:
    return EvalSets(retain, forget, test, label_matched(test, forget, seed))


@dataclass(frozen=True)
class Scores:
    values: dict[str, float]
    lira_roc: Roc  # D_f against held-out non-members, for the ROC plot
    rocs: dict[str, Roc] | None = None  # every calibrated attack's, by name


def score_model(model: nn.Module, sets: EvalSets, attacks: Attacks, device: torch.device) -> Scores:
    """Everything measured on one model alone (the gaps need the retrained model: see compare)."""
    loss = attacks.loss.roc(model, sets.forget, sets.test, device)
    values = {
        TEST_ACC: accuracy(model, sets.test, device),
        RETAIN_ACC: accuracy(model, sets.retain, device),
        FORGET_ACC: accuracy(model, sets.forget, device),
        MIA_FORGET_ASR: attacks.shadow.member_rate(model, sets.forget, device),
        SHADOW_AUC: attacks.shadow.roc(model, sets.forget, sets.test, device).auc,
        MIA_AUC: loss.auc, TPR_AT_1PCT_FPR: loss.tpr_at_1pct_fpr,
    }
    rocs = {}
    for name in CALIBRATED:
        rocs[name] = attacks[name].roc(model, sets.forget, sets.test, device)
        label_mix = attacks[name].roc(model, sets.forget, sets.matched_nonmembers, device)
        values |= {auc_key(name): rocs[name].auc, tpr_key(name): rocs[name].tpr_at_1pct_fpr,
                   tpr_0_1pct_key(name): rocs[name].tpr_at_0_1pct_fpr,
                   matched(auc_key(name)): label_mix.auc, matched(tpr_key(name)): label_mix.tpr_at_1pct_fpr,
                   matched(tpr_0_1pct_key(name)): label_mix.tpr_at_0_1pct_fpr}
    return Scores(values, rocs["lira"], rocs)


def attack_strengths(model: nn.Module, train: Split, test: Split, attacks: Attacks,
                     device: torch.device, seed: int) -> dict[str, float]:
    """What each attack sees on the original model: all of D (members) against the held-out test records.
    The shadow attack's balanced accuracy uses equal-size samples, so 50% is chance."""
    gen = torch.Generator().manual_seed(seed)
    k = min(len(train), len(test))
    members = train.take(torch.randperm(len(train), generator=gen)[:k])
    strengths = {ATTACK_STRENGTH: attacks.shadow.balanced_accuracy(model, members, test, device),
                 ATTACK_STRENGTH_AUC: attacks.shadow.roc(model, train, test, device).auc}
    for name in CALIBRATED:
        seen = attacks[name].roc(model, train, test, device)
        strengths |= {strength_key(name): seen.auc, tpr_key(strength_key(name)): seen.tpr_at_1pct_fpr,
                      tpr_0_1pct_key(strength_key(name)): seen.tpr_at_0_1pct_fpr}
    return strengths


def compare(scores: dict[str, dict[str, float]], seconds: dict[str, float]) -> pd.DataFrame:
    """One seed, Table II shape: one row per method with its scores, gaps to `retrain`, time, speed-up and
    avg_rank."""
    if GOLD not in scores:
        raise ValueError("the comparison needs the retrained gold model's scores under 'retrain'")
    gold = scores[GOLD]
    rows = []
    for method, s in scores.items():
        row = {"method": method, **s, UNLEARN_SECONDS: seconds[method]}
        row |= {gap: abs(s[metric] - gold[metric]) for gap, metric in GAPS.items()}
        row[SPEEDUP] = seconds[GOLD] / seconds[method] if method != DO_NOTHING else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    table[AVG_RANK] = avg_rank(table)
    return table[[c for c in COLUMNS if c in table.columns] + [c for c in table.columns if c not in COLUMNS]]


def avg_rank(table: pd.DataFrame) -> pd.Series:
    """Mean over mu_gap, unlearn_seconds, ue_gap of each method's rank (0 = best, ties share the best rank)
    among the compared methods; the references (original, retrain, retrain_alt) get no rank (NaN)."""
    compared = table.drop(index=[m for m in REFERENCE_METHODS if m in table.index])
    ranks = compared[list(RANKED)].rank(method="min", ascending=True) - 1
    return ranks.mean(axis=1).reindex(table.index)


def summarize(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Several seeds' comparisons -> one row per method with `<metric>_mean` and `<metric>_std` (sample
    standard deviation; NaN for a single seed), methods in their first table's order."""
    stacked = pd.concat(tables)
    grouped = stacked.groupby(level=0, sort=False)
    mean, std = grouped.mean(), grouped.std(ddof=1)
    columns = {}
    for metric in tables[0].columns:
        columns[f"{metric}_mean"] = mean[metric]
        columns[f"{metric}_std"] = std[metric]
    return pd.DataFrame(columns).reindex(tables[0].index)


def noise_floors(summary: pd.DataFrame) -> dict[str, float]:
    """Each gap of retrain_alt (a second, equally valid gold model) to retrain, averaged over seeds: a gap no
    larger than this cannot be told apart from retraining."""
    return {gap: float(summary.loc[FLOOR, f"{gap}_mean"]) for gap in GAPS}


def within_floor(summary: pd.DataFrame, floors: dict[str, float]) -> pd.DataFrame:
    """True where a method's mean gap is at most the floor."""
    return pd.DataFrame({gap: summary[f"{gap}_mean"] <= floor + 1e-12 for gap, floor in floors.items()})


READABLE = [MU_GAP, UE_GAP, LIRA_AUC_GAP, RMIA_AUC_GAP, UNLEARN_SECONDS, TEST_ACC, FORGET_ACC, LIRA_AUC, RMIA_AUC,
            MIA_AUC]


def mean_std(mean: object, std: object, places: int = 3) -> str:
    """'mean ± std', or 'mean' where there is no spread to show (one seed: std is NaN); '' without a mean."""
    def finite(value: object) -> bool:
        return isinstance(value, numbers.Real) and math.isfinite(value)

    if not finite(mean):
        return ""
    return f"{mean:.{places}f}" + (f" ± {std:.{places}f}" if finite(std) else "")


def readable(summary: pd.DataFrame, shown: list[str] = READABLE) -> str:
    """The comparison as a reader scans it: one row per method, means (± std when several seeds ran)."""
    table = pd.DataFrame({m: [mean_std(mean, std) for mean, std in zip(summary[f"{m}_mean"], summary[f"{m}_std"],
                                                                     strict=True)]
                          for m in shown}, index=summary.index)
    note = "mean ± std over seeds" if summary[[f"{m}_std" for m in shown]].notna().any().any() else "one seed"
    return f"{table.to_string()}\n({note}; retrain_alt's gaps to retrain are the noise floor)"
