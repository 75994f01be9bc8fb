"""The one place that knows METRICS.md's key names and how each number is computed."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from iau_core.data import Split
from iau_core.privacy import ShadowAttack, loss_attack
from iau_core.training import accuracy

# Keys of METRICS.md's tables (a contract: scripts query MLflow by these names).
TEST_ACC, RETAIN_ACC, FORGET_ACC = "test_acc", "retain_acc", "forget_acc"
MU_GAP, UE_GAP = "mu_gap", "ue_gap"
MIA_FORGET_ASR, MIA_AUC, TPR_AT_1PCT_FPR = "mia_forget_asr", "mia_auc", "tpr_at_1pct_fpr"
UNLEARN_SECONDS, SPEEDUP, AVG_RANK = "unlearn_seconds", "speedup_vs_retrain", "avg_rank"
ATTACK_STRENGTH = "attack_strength"
REFERENCE_METHODS = ("retrain", "original")
RANKED = (MU_GAP, UNLEARN_SECONDS, UE_GAP)


@dataclass(frozen=True)
class EvalSets:
    """What a model is scored on. The loss attack compares equal-size samples of D_f and test."""

    retain: Split
    forget: Split
    test: Split
    loss_members: Split
    loss_nonmembers: Split


def make_eval_sets(retain: Split, forget: Split, test: Split, seed: int) -> EvalSets:
    gen = torch.Generator().manual_seed(seed)
    k = min(len(forget), len(test))
    members = forget.take(torch.randperm(len(forget), generator=gen)[:k])
    nonmembers = test.take(torch.randperm(len(test), generator=gen)[:k])
    return EvalSets(retain, forget, test, members, nonmembers)


def score_model(model: nn.Module, sets: EvalSets, attack: ShadowAttack, device: torch.device) -> dict[str, float]:
    """Everything measured on one model alone (the gaps need the retrained model: see compare)."""
    auc, tpr = loss_attack(model, sets.loss_members, sets.loss_nonmembers, device)
    return {
        TEST_ACC: accuracy(model, sets.test, device),
        RETAIN_ACC: accuracy(model, sets.retain, device),
        FORGET_ACC: accuracy(model, sets.forget, device),
        MIA_FORGET_ASR: attack.member_rate(model, sets.forget, device),
        MIA_AUC: auc,
        TPR_AT_1PCT_FPR: tpr,
    }


def compare(scores: dict[str, dict[str, float]], seconds: dict[str, float]) -> pd.DataFrame:
    """Table II shape: one row per method with its scores, gaps to `retrain`, time, speed-up and avg_rank."""
    if "retrain" not in scores:
        raise ValueError("the comparison needs the retrained gold model's scores under 'retrain'")
    gold = scores["retrain"]
    rows = []
    for method, s in scores.items():
        row = {"method": method, **s, UNLEARN_SECONDS: seconds[method]}
        row[MU_GAP] = abs(s[TEST_ACC] - gold[TEST_ACC])
        row[UE_GAP] = abs(s[MIA_FORGET_ASR] - gold[MIA_FORGET_ASR])
        row[SPEEDUP] = seconds["retrain"] / seconds[method] if method != "original" else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    table[AVG_RANK] = avg_rank(table)
    first = [MU_GAP, UNLEARN_SECONDS, UE_GAP, AVG_RANK, TEST_ACC, FORGET_ACC, RETAIN_ACC, MIA_FORGET_ASR]
    return table[first + [c for c in table.columns if c not in first]]


def avg_rank(table: pd.DataFrame) -> pd.Series:
    """Mean over mu_gap, unlearn_seconds, ue_gap of each method's rank (0 = best, ties share the best rank)
    among the compared methods; the references (retrain, original) get no rank (NaN)."""
    compared = table.drop(index=[m for m in REFERENCE_METHODS if m in table.index])
    ranks = compared[list(RANKED)].rank(method="min", ascending=True) - 1
    return ranks.mean(axis=1).reindex(table.index)
