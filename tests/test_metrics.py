"""The comparison table: gaps to the gold model, speed-up, and the paper's average rank."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from iau_core.attacks import Attack, Attacks, roc
from iau_core.data import Split
from iau_core.metrics import (
    CALIBRATED,
    EvalSets,
    attack_strengths,
    avg_rank,
    compare,
    noise_floors,
    score_model,
    summarize,
    within_floor,
)

CPU = torch.device("cpu")
METRICS_DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def test_avg_rank_reproduces_paper_table_ii_lenet5_cifar10():
    # Paper Table II, LeNet5 / CIFAR10: (MU, seconds, UE) per method; IAU ranks 3, 0, 2 -> 1.7.
    table = pd.DataFrame(
        {"mu_gap": [0, 0.80, 1.38, 0.51, 0.61, 1.31],
         "unlearn_seconds": [414, 33, 23, 33, 1294, 13],
         "ue_gap": [0, 2.27, 6.11, 3.21, 8.08, 5.21]},
        index=["retrain", "usgd", "bad_teaching", "amnesiac", "fisher", "iau"],
    )
    ranks = avg_rank(table)
    assert round(ranks["iau"], 1) == 1.7
    assert round(ranks["bad_teaching"], 1) == 2.7
    assert round(ranks["fisher"], 1) == 3.0
    assert math.isnan(ranks["retrain"])


def scores(test_acc, asr, lira=0.5, rmia=0.5):
    return {"test_acc": test_acc, "retain_acc": 99.0, "forget_acc": 90.0, "mia_forget_asr": asr,
            "mia_auc": 0.5, "tpr_at_1pct_fpr": 0.01, "lira_auc": lira, "rmia_auc": rmia}


def test_compare_measures_gaps_against_retrain():
    table = compare(
        {"original": scores(90.0, 70.0, 0.70), "retrain": scores(88.0, 40.0, 0.55, 0.58),
         "retrain_alt": scores(88.4, 41.0, 0.56), "iau": scores(87.5, 45.0, 0.60, 0.50)},
        {"original": 0.0, "retrain": 100.0, "retrain_alt": 90.0, "iau": 2.0},
    )
    assert table.loc["retrain", "mu_gap"] == 0 and table.loc["retrain", "ue_gap"] == 0
    assert table.loc["iau", "mu_gap"] == pytest.approx(0.5)
    assert table.loc["iau", "ue_gap"] == pytest.approx(5.0)
    assert table.loc["iau", "lira_auc_gap"] == pytest.approx(0.05)
    assert table.loc["iau", "rmia_auc_gap"] == pytest.approx(0.08)  # a gap is absolute: below retrain counts too
    assert table.loc["original", "ue_gap"] == pytest.approx(30.0)
    assert table.loc["iau", "speedup_vs_retrain"] == pytest.approx(50.0)
    assert table.loc["iau", "avg_rank"] == 0
    for reference in ("original", "retrain", "retrain_alt"):  # references are never ranked
        assert math.isnan(table.loc[reference, "avg_rank"])


def test_compare_needs_the_gold_model():
    with pytest.raises(ValueError, match="retrain"):
        compare({"iau": scores(80, 50)}, {"iau": 1.0})


def seed_table(iau_acc, alt_acc):
    return compare({"retrain": scores(88.0, 40.0), "retrain_alt": scores(alt_acc, 40.0),
                    "iau": scores(iau_acc, 40.0)}, {"retrain": 10.0, "retrain_alt": 10.0, "iau": 1.0})


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = summarize([seed_table(87.0, 88.5), seed_table(86.0, 87.5), seed_table(88.0, 88.0)])
    assert list(summary.index) == ["retrain", "retrain_alt", "iau"]
    assert summary.loc["iau", "mu_gap_mean"] == pytest.approx(1.0)  # gaps 1, 2, 0
    assert summary.loc["iau", "mu_gap_std"] == pytest.approx(1.0)
    one = summarize([seed_table(87.0, 88.5)])
    assert math.isnan(one.loc["iau", "mu_gap_std"]) and one.loc["iau", "mu_gap_mean"] == pytest.approx(1.0)


def test_noise_floor_is_retrain_alt_and_marks_each_gap():
    summary = summarize([seed_table(87.0, 88.5), seed_table(87.8, 87.5)])  # iau gaps 1.0, 0.2; floor 0.5, 0.5
    floors = noise_floors(summary)
    assert floors["mu_gap"] == pytest.approx(0.5)
    verdict = within_floor(summary, floors)
    assert not verdict.loc["iau", "mu_gap"]  # mean 0.6 > 0.5
    assert verdict.loc["retrain", "mu_gap"] and verdict.loc["retrain_alt", "mu_gap"]
    summary_close = summarize([seed_table(88.3, 88.5), seed_table(87.9, 87.5)])  # iau 0.3, 0.1 -> 0.2
    assert within_floor(summary_close, noise_floors(summary_close)).loc["iau", "mu_gap"]


class ById(Attack):
    """A stand-in attack whose score is the record's id (members get the high ids below), so score_model's keys
    can be checked without training anything."""

    def scores(self, target, split, device):
        return split.ids.numpy().astype(float)

    def arrays(self):
        return {}

    def member_rate(self, target, split, device):
        return 50.0

    def balanced_accuracy(self, target, members, nonmembers, device):
        return 50.0


def split(ids):
    gen = torch.Generator().manual_seed(len(ids))
    return Split(torch.randn(len(ids), 4, generator=gen), torch.randint(0, 3, (len(ids),), generator=gen),
                 torch.as_tensor(ids))


@pytest.fixture(scope="module")
def scored():
    """score_model and attack_strengths on a tiny linear model: 100 D_f records, 20 of them scored above every one
    of the 2,000 held-out records (ids 0-1999) and the rest below most; the label-matched half holds the top ids."""
    forget = split(np.r_[np.arange(1980, 2000) + 10_000, np.arange(100, 180)])
    test = split(np.arange(2000))
    sets = EvalSets(split(np.arange(3000, 3050)), forget, test, test.take(torch.arange(1000, 2000)))
    attacks = Attacks({name: ById() for name in ("shadow", "loss", *CALIBRATED)})
    model = nn.Linear(4, 3)
    return (score_model(model, sets, attacks, CPU).values,
            attack_strengths(model, forget, test, attacks, CPU, 0), roc(forget.ids.numpy(), test.ids.numpy()))


def test_score_model_writes_the_tpr_at_a_tenth_of_a_percent_for_every_calibrated_attack(scored):
    values, strengths, expected = scored
    assert expected.tpr_at_0_1pct_fpr == pytest.approx(0.2) and expected.tpr_at_1pct_fpr == pytest.approx(0.2)
    for attack in ("lira", "rmia"):
        assert values[f"{attack}_tpr_at_0_1pct_fpr"] == expected.tpr_at_0_1pct_fpr
        assert values[f"{attack}_tpr_at_1pct_fpr"] == expected.tpr_at_1pct_fpr
        # against 1,000 label-matched records 0.1% FPR is one false positive, so the same 20 members
        assert values[f"{attack}_tpr_at_0_1pct_fpr_label_matched"] == pytest.approx(0.2)
        assert strengths[f"{attack}_strength_tpr_at_0_1pct_fpr"] == expected.tpr_at_0_1pct_fpr
        assert strengths[f"{attack}_strength_tpr_at_1pct_fpr"] == expected.tpr_at_1pct_fpr


def documented(section: str) -> set[str]:
    """The backticked names in docs/metrics.md's `### <section>` part (up to the next heading of that level)."""
    text = METRICS_DOC.read_text()
    part = text[text.index(f"\n### {section}"):]
    part = part[:part.find("\n### ", 1) if "\n### " in part[1:] else len(part)]
    return set(re.findall(r"`([a-z0-9_.]+)`", part))


def test_metrics_doc_lists_every_key_score_model_and_attack_strengths_write(scored):
    """docs/metrics.md is the contract: every key a method's run gets from score_model is in 'Per-method child
    run', every attack-strength key in 'Parent run of `unlearn`'."""
    values, strengths, _ = scored
    assert set(values) - documented("Per-method child run") == set()
    assert set(strengths) - documented("Parent run of `unlearn`") == set()
