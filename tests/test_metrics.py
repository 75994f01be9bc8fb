"""The comparison table: gaps to the gold model, speed-up, and the paper's average rank."""

import math

import pandas as pd
import pytest

from iau_core.metrics import avg_rank, compare, noise_floors, summarize, within_floor


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
