"""The comparison table: gaps to the gold model, speed-up, and the paper's average rank."""

import math

import pandas as pd
import pytest

from iau_core.metrics import avg_rank, compare


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


def scores(test_acc, asr):
    return {"test_acc": test_acc, "retain_acc": 99.0, "forget_acc": 90.0, "mia_forget_asr": asr,
            "mia_auc": 0.5, "tpr_at_1pct_fpr": 0.01}


def test_compare_measures_gaps_against_retrain():
    table = compare(
        {"original": scores(90.0, 70.0), "retrain": scores(88.0, 40.0), "iau": scores(87.5, 45.0)},
        {"original": 0.0, "retrain": 100.0, "iau": 2.0},
    )
    assert table.loc["retrain", "mu_gap"] == 0 and table.loc["retrain", "ue_gap"] == 0
    assert table.loc["iau", "mu_gap"] == pytest.approx(0.5)
    assert table.loc["iau", "ue_gap"] == pytest.approx(5.0)
    assert table.loc["original", "ue_gap"] == pytest.approx(30.0)
    assert table.loc["iau", "speedup_vs_retrain"] == pytest.approx(50.0)
    assert table.loc["iau", "avg_rank"] == 0
    assert math.isnan(table.loc["original", "avg_rank"])


def test_compare_needs_the_gold_model():
    with pytest.raises(ValueError, match="retrain"):
        compare({"iau": scores(80, 50)}, {"iau": 1.0})
