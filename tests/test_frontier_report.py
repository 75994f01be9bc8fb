"""The frontier report's arithmetic (studies/frontier_report.py) on raw numbers made by hand."""

import json
from math import nan

import pytest

from studies.frontier_report import points_of, render, stop_rule_walk, summarize_setting


def point(method, rmia, test_acc, cpu, line=None, knob=0, val_acc=90.0, self_check=0.6, **extra):
    return {"method": method, "line": line or method, "knob": knob, "cpu_seconds": cpu, "rmia_auc": rmia,
            "lira_auc": rmia, "rmia_tpr_at_1pct_fpr": 0.0, "test_acc": test_acc, "val_acc": val_acc,
            "self_check_auc": self_check, **extra}


def seed_raw(seed, shift=0.0):
    """Original at RMIA 0.70, retrain at 0.50: a method at 0.60 closes half the movement."""
    points = [point("original", 0.70, 85.0, 0.0), point("retrain", 0.50, 84.0, 100.0),
              point("retrain_alt", 0.51 + shift, 84.5, 100.0),
              point("finetune", 0.66, 84.2, 2.0, "lr 0.01", 1, self_check=0.58),
              point("finetune", 0.60 + shift, 84.4, 4.0, "lr 0.01", 2, self_check=0.52),
              point("finetune", 0.52, 80.0, 6.0, "lr 0.01", 3, self_check=0.50),  # closes most, but MU 4 points
              point("salun", 0.58, 84.3, 2.0, "lr 0.013", 1, self_check=0.5),  # closes 60%
              point("salun", 0.40, 84.3, 4.0, "lr 0.013", 2, self_check=0.4),  # 150%: past retraining
              point("iau", 0.69, 85.0, 0.5, "iau (sum), eta rule", 0.01, oracle_free="eta rule"),
              point("neggrad", 0.30 if seed else nan, 84.0 if seed else nan, 1.0, "lr 1", 5,
                    self_check=0.5 if seed else nan)]  # diverged on seed 0: never a best point
    return {"seed": seed, "settings": {"random_200": {"forget": 200, "self_check_limit": 0.55, "points": points}}}


def test_fraction_closed_mu_gap_and_compute_are_paired_per_seed():
    points = points_of([seed_raw(0)], "random_200").set_index(["method", "knob"])
    assert points.loc[("finetune", 2), "fraction_closed"] == pytest.approx(0.5)
    assert points.loc[("finetune", 2), "mu_gap"] == pytest.approx(0.4)
    assert points.loc[("finetune", 2), "compute"] == pytest.approx(0.04)
    assert points.loc[("retrain", 0), "fraction_closed"] == pytest.approx(1.0)


def test_the_oracle_best_stays_within_the_mu_floor_and_the_rule_walks_the_line_as_the_stop_rule_does():
    raws = [seed_raw(0, 0.0), seed_raw(1, 0.02), seed_raw(2, -0.02)]
    points = points_of(raws, "random_200")
    summary = summarize_setting(points)
    assert summary["mu_floor"] == pytest.approx(0.5)
    best = summary["methods"]["finetune"]["best"]
    assert best["point"] == "lr 0.01, 2"  # epoch 3 closes more, but its MU gap (4 points) is past the floor
    assert best["fraction_closed"]["mean"] == pytest.approx(0.5)
    assert best["fraction_closed"]["ci_low"] < 0.5 < best["fraction_closed"]["ci_high"]
    chosen = stop_rule_walk(points, "finetune", "lr 0.01", 2.0)
    assert list(chosen.knob) == [2, 2, 2]  # epoch 1's self-check (0.58) is over the limit (0.55)
    strict = stop_rule_walk(points, "finetune", "lr 0.01", 0.0)
    assert list(strict.knob) == [3, 3, 3]  # at z = 0 only epoch 3 (0.50) is at chance
    rule = summary["methods"]["finetune"]["self_check_rule"]
    assert rule["z=2, stop"]["oracle_free"] and rule["z=2, stop"]["kept"] == ["2", "2", "2"]
    assert rule["z=2, stop"]["fraction_closed"]["mean"] == pytest.approx(0.5)
    assert summary["methods"]["iau"]["iau (sum), eta rule"]["fraction_closed"]["mean"] == pytest.approx(0.05)
    assert summary["methods"]["neggrad"]["best"] is None
    assert summary["methods"]["salun"]["best"]["point"] == "lr 0.013, 1"  # the closest to retraining's movement
    assert summary["methods"]["neggrad"]["diverged_points"] == ["lr 1, 5"]


def test_the_walk_undoes_an_epoch_over_the_validation_budget_and_stops():
    """As run_epochs: an over-budget epoch ends the walk at the epoch before; over budget at once: no change."""
    raw = seed_raw(0)
    for p in raw["settings"]["random_200"]["points"]:
        if p["method"] == "finetune" and p["knob"] == 2:
            p["val_acc"] = 85.0  # 5 points below the original's 90
    points = points_of([raw], "random_200")
    assert list(stop_rule_walk(points, "finetune", "lr 0.01", 0.0).knob) == [1]
    for p in raw["settings"]["random_200"]["points"]:
        if p["method"] == "finetune":
            p["val_acc"] = 80.0
    kept = stop_rule_walk(points_of([raw], "random_200"), "finetune", "lr 0.01", 0.0)
    assert list(kept.method) == ["original"] and kept.fraction_closed.iloc[0] == 0
    raw = seed_raw(0)
    for p in raw["settings"]["random_200"]["points"]:
        if p["method"] == "finetune" and p["knob"] == 1:
            p["val_acc"] = 85.0  # only the first epoch over budget: `continue` walks on to epoch 3
    points = points_of([raw], "random_200")
    assert list(stop_rule_walk(points, "finetune", "lr 0.01", 0.0, "stop").method) == ["original"]
    assert list(stop_rule_walk(points, "finetune", "lr 0.01", 0.0, "continue").knob) == [3]


def test_render_writes_the_report_the_json_and_the_plot(tmp_path):
    raw_dir = tmp_path / "frontier"
    raw_dir.mkdir()
    for seed in (0, 1):
        (raw_dir / f"seed_{seed}.json").write_text(json.dumps(seed_raw(seed, 0.01 * seed)))
    render(raw_dir, tmp_path)
    text = (tmp_path / "frontier.md").read_text()
    assert "oracle study" in text.lower() and "| finetune | lr 0.01, 2 |" in text
    data = json.loads((tmp_path / "frontier.json").read_text())
    assert data["random_200"]["methods"]["finetune"]["best"]["within_floor"] is True
    nightly = data["random_200"]["methods"]["finetune"]["self_check_rule"]["z=0, continue (nightly)"]
    assert nightly["oracle_free"] is True and nightly["over_budget"] == "continue"
    assert (tmp_path / "frontier.png").stat().st_size > 10_000
