"""Paired confidence intervals and the verdict per method: the numbers a reader trusts to say 'this method forgot'."""

import math

import numpy as np
import pandas as pd
import pytest

from iau_core.intervals import t_interval
from iau_core.verdicts import (
    FORGETS,
    NO_CHANGE,
    ONE_SEED,
    OVERSHOOTS,
    UNDETECTED,
    assess,
    best_method,
    floors_blind,
    method_verdicts,
    small_roles,
    unchanged_methods,
    verdict_rank,
    verdict_table,
)


def test_t_interval_matches_a_textbook_value():
    # differences 1, 2, 3, 4, 5: mean 3, s = sqrt(2.5), t_{0.975, 4} = 2.776445 -> half-width 1.963243
    ci = t_interval([1, 2, 3, 4, 5])
    assert ci.mean == pytest.approx(3.0)
    assert ci.hi - ci.mean == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-5)
    assert ci.lo == pytest.approx(3.0 - 1.963243, rel=1e-5)
    assert ci.excludes_zero()


def test_t_interval_with_two_seeds_is_wide_and_with_one_is_not_invented():
    two = t_interval([0.1, 0.3])  # t_{0.975, 1} = 12.706: mean 0.2, s/sqrt(2) = 0.1
    assert (two.lo, two.hi) == pytest.approx((0.2 - 1.27062, 0.2 + 1.27062), rel=1e-4)
    assert not two.excludes_zero()
    one = t_interval([0.4])
    assert one.mean == 0.4 and not one.known and "n/a" in one.text()


def seed(original, retrain, alt, **methods):
    """One seed's table: each value is LiRA's AUC on D_f (and the others derived from it)."""
    rows = {"original": original, "retrain": retrain, "retrain_alt": alt, **methods}
    table = pd.DataFrame({"lira_auc": rows}).rename_axis("method")
    table["lira_auc_gap"] = (table["lira_auc"] - retrain).abs()
    table["unlearn_seconds"] = 1.0
    return table


SEEDS = [  # original leaks (~0.75), retrain ~0.55; "same" equals original, "good" lands near retrain
    seed(0.75, 0.55, 0.56, same=0.75, good=0.57, past=0.30, slow=0.58),
    seed(0.77, 0.54, 0.55, same=0.77, good=0.55, past=0.28, slow=0.56),
    seed(0.74, 0.56, 0.55, same=0.74, good=0.56, past=0.33, slow=0.57),
    seed(0.76, 0.55, 0.57, same=0.76, good=0.58, past=0.31, slow=0.55),
    seed(0.75, 0.53, 0.54, same=0.75, good=0.54, past=0.29, slow=0.56),
]


def test_a_method_equal_to_original_shows_no_detectable_change():
    verdicts = method_verdicts(verdict_table(SEEDS, metrics=("lira_auc",)))
    assert verdicts["same"] == UNDETECTED


def test_a_method_that_lands_near_retrain_forgets_and_one_past_it_overshoots():
    table = verdict_table(SEEDS, metrics=("lira_auc",))
    verdicts = method_verdicts(table)
    assert verdicts["good"] == FORGETS and verdicts["retrain_alt"] == FORGETS
    assert verdicts["past"] == OVERSHOOTS
    row = table.set_index("method").loc["past"]
    assert row.vs_original == pytest.approx(np.mean([0.30 - 0.75, 0.28 - 0.77, 0.33 - 0.74, 0.31 - 0.76,
                                                     0.29 - 0.75]))
    assert row.vs_retrain_hi < 0  # past retrain, beyond the interval


def test_a_method_that_kept_the_deployed_model_is_no_change_and_never_ranked():
    table = verdict_table(SEEDS, unchanged={"good"}, metrics=("lira_auc",))
    verdicts = method_verdicts(table)
    assert verdicts["good"] == NO_CHANGE
    summary = pd.DataFrame({"lira_auc_gap_mean": [0.2, 0.0, 0.01, 0.2, 0.01, 0.25, 0.01],
                            "unlearn_seconds_mean": [0, 9, 9, 0.1, 0.2, 0.3, 5.0]},
                           index=["original", "retrain", "retrain_alt", "same", "good", "past", "slow"])
    ranks = verdict_rank(summary, verdicts, {"lira_auc_gap": 0.02})
    assert math.isnan(ranks["good"]) and math.isnan(ranks["same"]) and math.isnan(ranks["past"])
    assert ranks["slow"] == 1
    assert best_method(summary, verdicts, {"lira_auc_gap": 0.02}) == "slow"


def test_choices_say_which_methods_returned_the_deployed_model():
    choices = {"finetune": {"epochs_kept": 0}, "scrub": {"epochs_kept": 2}, "iau": {"eta_chosen": 0.0},
               "ia": {"eta_chosen": 1e-4}, "fisher": {"alpha": 1e-6}, "original": {}}
    assert unchanged_methods(choices) == {"finetune", "iau"}


def test_one_seed_gives_no_verdict_but_a_kept_model_is_still_no_change():
    verdicts = method_verdicts(verdict_table(SEEDS[:1], unchanged={"same"}, metrics=("lira_auc",)))
    assert verdicts["same"] == NO_CHANGE
    assert verdicts["good"] == ONE_SEED and verdicts["past"] == ONE_SEED


def test_one_seed_still_ranks_the_methods_that_changed_the_model_beside_one_that_did_not():
    verdicts = method_verdicts(verdict_table(SEEDS[:1], unchanged={"same"}, metrics=("lira_auc",)))
    summary = pd.DataFrame({"lira_auc_gap_mean": [0.2, 0.0, 0.01, 0.2, 0.02, 0.25, 0.03],
                            "unlearn_seconds_mean": [0, 9, 9, 0.1, 0.2, 0.3, 5.0]},
                           index=["original", "retrain", "retrain_alt", "same", "good", "past", "slow"])
    ranks = verdict_rank(summary, verdicts, {"lira_auc_gap": 0.05})
    assert math.isnan(ranks["same"]) and math.isnan(ranks["retrain_alt"])
    assert (ranks["good"], ranks["slow"], ranks["past"]) == (1, 2, 3)  # within the floor fastest first, then the rest


def test_small_roles_and_blind_floors_are_said():
    assert small_roles(20, 69) and len(small_roles(20, 69)) == 2
    assert small_roles(400, 1000) == []
    summary = pd.DataFrame({"lira_auc_gap_mean": [0.01, 0.0, 0.02]}, index=["original", "retrain", "retrain_alt"])
    assert floors_blind(summary, {"lira_auc_gap": 0.02})
    assert not floors_blind(summary, {"lira_auc_gap": 0.005})


def test_assess_marks_identical_scores_as_no_change_and_widens_to_one_row_per_method():
    summary = pd.DataFrame({"lira_auc_gap_mean": [0.2, 0.0, 0.01, 0.2, 0.01, 0.25, 0.01],
                            "unlearn_seconds_mean": [0, 9, 9, 0.1, 0.2, 0.3, 5.0]},
                           index=["original", "retrain", "retrain_alt", "same", "good", "past", "slow"])
    found = assess(SEEDS, summary, {"lira_auc_gap": 0.02}, kept={"slow": [True] * 5},
                   forget_records=400, val_records=1000)
    assert found.verdicts["same"] == NO_CHANGE and found.verdicts["slow"] == NO_CHANGE
    assert found.best == "good" and found.warnings == []
    wide = found.wide()
    assert wide.loc["past", "lira_auc_verdict"] == OVERSHOOTS and wide.loc["good", "verdict_rank"] == 1
    assert {"lira_auc_vs_original_lo", "lira_auc_vs_retrain_hi"} <= set(wide.columns)


def comparison(kept: dict[str, list[bool]] | None = None):
    """Five seeds of a full comparison (compare's columns), with `finetune` equal to original."""
    from iau_core.metrics import compare, noise_floors, summarize

    rng = np.random.default_rng(0)
    aucs = {"original": 0.75, "retrain": 0.55, "retrain_alt": 0.56, "iau": 0.57, "amnesiac": 0.30, "finetune": 0.75}
    tables = []
    for _ in range(5):
        orig_auc = 0.75 + rng.normal(0, 0.01)
        scores = {m: {"test_acc": 85 + rng.normal(0, 0.3), "forget_acc": 90.0,
                      "mia_forget_asr": 50 + 40 * (a - 0.5) + rng.normal(0, 0.3),
                      "lira_auc": (orig_auc if m in ("original", "finetune") else a + rng.normal(0, 0.01))}
                  for m, a in aucs.items()}
        for m in scores:  # every calibrated attack's AUC is in a real comparison; RMIA here reads as LiRA does
            scores[m]["rmia_auc"] = scores[m]["lira_auc"]
        scores["finetune"] = dict(scores["original"])
        seconds = {"original": 0.0, "retrain": 30.0, "retrain_alt": 31.0, "iau": 0.5, "amnesiac": 2.0, "finetune": 0.1}
        tables.append(compare(scores, seconds))
    summary = summarize(tables)
    floors = noise_floors(summary)
    return summary, floors, assess(tables, summary, floors, kept, forget_records=200, val_records=1000)


def test_the_comparison_leads_with_the_answer_and_never_marks_a_kept_model():
    from reporting import tables as table_text
    from reporting import verdicts as text

    summary, floors, found = comparison()
    assert found.verdicts["finetune"] == NO_CHANGE and found.verdicts["iau"] == FORGETS
    assert found.verdicts["amnesiac"] == OVERSHOOTS
    doc = text.comparison_document("unlearn (random), 5 seed(s)", summary, floors, found,
                                   table_text.summary_markdown(summary, floors, table_text.SHOWN,
                                                               set(found.unchanged)), "What the attacks see.")
    compact = doc[doc.index("| rank |"):doc.index("## Details")]
    rows = {line.split("|")[2].strip(): line for line in compact.splitlines() if line.startswith("| ")}
    assert rows["iau"].startswith("| 1 |") and "**forgets**" in rows["iau"]
    assert "✓" not in rows["finetune"] and "no change" in rows["finetune"]
    assert list(rows)[2:5] == ["iau", "amnesiac", "finetune"]  # ranked first, then by verdict, then references
    assert doc.index("| rank |") < doc.index("## Details")  # the compact table comes before the details
    full = doc[doc.index("## Details: every metric"):]
    assert "(no change)" in next(line for line in full.splitlines() if line.startswith("| finetune"))
    printed = text.printed(summary.join(found.wide()))
    assert "forgets" in printed and "overshoots" in printed and "[" in printed
    assert "Best method within every noise floor" in text.answer(found, summary) or found.best is None


def test_the_verdict_is_read_on_the_headline_attack():
    """attacks.headline: rmia reads each verdict on rmia_auc. Here RMIA sees iau move while LiRA does not."""
    from iau_core.metrics import compare, noise_floors, summarize

    rng = np.random.default_rng(1)
    tables = []
    for _ in range(5):
        scores = {}
        for method, lira, rmia in (("original", 0.70, 0.75), ("retrain", 0.70, 0.55), ("retrain_alt", 0.70, 0.56),
                                   ("iau", 0.70, 0.57)):
            scores[method] = {"test_acc": 85 + rng.normal(0, 0.3), "forget_acc": 90.0, "mia_forget_asr": 60.0,
                              "lira_auc": lira + rng.normal(0, 0.01), "rmia_auc": rmia + rng.normal(0, 0.01)}
        tables.append(compare(scores, {"original": 0.0, "retrain": 30.0, "retrain_alt": 31.0, "iau": 0.5}))
    summary = summarize(tables)
    floors = noise_floors(summary)
    by_rmia = assess(tables, summary, floors, headline="rmia_auc")
    by_lira = assess(tables, summary, floors, headline="lira_auc")
    assert by_rmia.headline == "rmia_auc" and by_rmia.verdicts["iau"] == FORGETS
    assert by_lira.verdicts["iau"] != FORGETS
    assert by_rmia.wide().loc["iau", "verdict_metric"] == "rmia_auc"


def roc_of(members, nonmembers):
    from iau_core.attacks.roc import roc

    return roc(np.asarray(members, dtype=float), np.asarray(nonmembers, dtype=float))


def test_the_record_interval_is_the_paired_auc_difference_and_excludes_zero_only_for_a_real_move():
    from sklearn.metrics import roc_auc_score

    from iau_core.intervals import record_interval

    rng = np.random.default_rng(1)
    held_out = rng.normal(size=2000)
    leaky = rng.normal(0.6, 1, size=200)  # the original: members score higher (AUC about 0.66)
    original = roc_of(leaky, held_out)
    forgot = roc_of(leaky - 0.6, held_out)  # the same records, the membership signal removed
    nudged = roc_of(leaky + rng.normal(0, 1e-3, size=200), held_out)  # moved by noise only
    moved = record_interval(forgot, original)
    truth = np.r_[np.ones(200), np.zeros(2000)]
    assert moved.mean == pytest.approx(roc_auc_score(truth, np.r_[leaky - 0.6, held_out]) -
                                       roc_auc_score(truth, np.r_[leaky, held_out]), abs=1e-6)
    assert moved.hi < 0 and moved.lo < moved.mean < moved.hi
    assert not record_interval(nudged, original).excludes_zero()
    assert record_interval(original, original).mean == 0


def test_one_seed_with_per_record_scores_has_record_intervals_and_real_verdicts():
    rng = np.random.default_rng(2)
    held_out = rng.normal(size=1000)
    leaky = rng.normal(0.8, 1, size=150)
    rocs = {"original": roc_of(leaky, held_out), "retrain": roc_of(leaky - 0.8, held_out),
            "retrain_alt": roc_of(leaky - 0.75, held_out), "good": roc_of(leaky - 0.7, held_out),
            "same": roc_of(leaky + rng.normal(0, 1e-4, size=150), held_out)}
    table = pd.DataFrame({"lira_auc": {m: r.auc for m, r in rocs.items()}}).rename_axis("method")
    table["lira_auc_gap"] = (table["lira_auc"] - table.loc["retrain", "lira_auc"]).abs()
    table["unlearn_seconds"] = 1.0
    summary = summarize_like(table)
    found = assess([table], summary, {"lira_auc_gap": 0.05}, forget_records=150, val_records=1000,
                   metrics=("lira_auc",), rocs=rocs)
    assert found.basis == "records"
    assert found.verdicts["good"] == FORGETS and found.verdicts["same"] == UNDETECTED
    assert found.ranks["good"] == 1 and math.isnan(found.ranks["same"])
    assert any("over D_f's and the held-out records" in w for w in found.warnings)
    assert not any("second gold model" in w for w in found.warnings)  # retrain_alt forgets like retrain here
    rocs["retrain_alt"] = roc_of(leaky - 1.6, held_out)  # a second retraining far past the first
    table.loc["retrain_alt", "lira_auc"] = rocs["retrain_alt"].auc
    moved = assess([table], summary, {"lira_auc_gap": 0.05}, metrics=("lira_auc",), rocs=rocs)
    assert moved.verdicts["retrain_alt"] == OVERSHOOTS
    assert any("second gold model, is itself judged 'overshoots'" in w for w in moved.warnings)
    assert assess([table], summary, {"lira_auc_gap": 0.05}, metrics=("lira_auc",)).basis == "none"


def summarize_like(table: pd.DataFrame) -> pd.DataFrame:
    return table.add_suffix("_mean")
