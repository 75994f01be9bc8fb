"""What the Prefect UI shows of a deletion batch (tasks/deletion.py): the ladder table rounded to what the gate
resolves and with each rung's seconds, the step table, the audit's request list capped, and artifact keys that are
valid for Prefect and the same for every run of a batch. No server, no browser: the rows and the Markdown as built
(make prefect-ui-check looks at them in the UI)."""

from __future__ import annotations

import math

import pytest

from iau_core.deletion import Attempt, GateResult
from tasks.deletion import REQUESTS_SHOWN, artifact_key, audit_markdown, ladder_rows, step_rows

STEPS = {"data": 0.16234, "preconditions": 0.0312, "champion": 0.0333, "unlearn-iau": 0.10789,
         "gate-iau": 12.34567891, "unlearn-retrain": 40.04999, "gate-retrain": 3.98765, "register": 0.0612,
         "forget-data": 0.3245, "promote": 0.0111}


def gate_result(passed: bool, auc: float) -> GateResult:
    return GateResult(passed=passed, reasons=[] if passed else ["attack AUC 0.6173 above the threshold 0.5512"],
                      privacy_verdict="passed" if passed else "failed", utility_ok=True, attack="lira",
                      val_acc_champion=91.23456, val_acc_candidate=90.98765, val_acc_drop=0.24691358,
                      forget_auc_champion=0.71234567, forget_auc_candidate=auc, auc_threshold=0.55123456789,
                      detectable_shift=0.05123456789, unchanged=False, members=1000, nonmembers=1000)


def audit(requests: int) -> dict:
    gates = {"iau": Attempt("iau", gate_result(False, 0.61729876), 0.1012345678, False).as_dict(),
             "retrain": Attempt("retrain", gate_result(True, 0.5012987), 38.9876543, True).as_dict()}
    return {"batch_id": 7, "outcome": "promoted", "method": "retrain", "resumed": False, "exact": True,
            "escalation": "every approximate rung was rejected", "ladder": ["iau", "retrain"],
            "parent_model_version": "models:/m/3", "model_version": "models:/m/4", "parent_data_version": "aaa",
            "data_version": "bbb", "mlflow_run_id": "run123", "prefect_flow_run_id": "flow456",
            "started_by": "prefect flow run flow456", "gates": gates, "steps": STEPS,
            "requests": [{"sample_id": 1000 + i, "tier": "normal", "reason": "erasure | art. 17",
                          "requested_at": "2026-12-07T02:00:00+00:00"} for i in range(requests)]}


def test_ladder_rows_are_rounded_and_carry_each_rungs_seconds():
    rows = ladder_rows(audit(3))
    assert [r["method"] for r in rows] == ["iau", "retrain"]  # the order the ladder tried them
    iau, retrain = rows
    assert list(iau) == ["method", "accepted", "privacy", "step s", "gate s", "AUC pre", "AUC post",
                         "limit", "Δ acc"]  # the seconds before the AUCs: on screen at 1280 px
    assert (iau["accepted"], retrain["accepted"]) == (False, True) and iau["privacy"] == "failed"
    assert iau["AUC post"] == 0.617 and retrain["AUC post"] == 0.501
    assert iau["AUC pre"] == 0.712 and iau["limit"] == 0.551 and iau["Δ acc"] == 0.247
    assert iau["step s"] == 0.1 and retrain["step s"] == 39.0  # the method's own seconds
    assert iau["gate s"] == 12.3 and retrain["gate s"] == 4.0  # the ledger's gate-<method> steps
    for row in rows:  # nothing longer than what was asked for reaches the table
        for value in row.values():
            if isinstance(value, float):
                assert len(repr(value).split(".")[1]) <= 3, row


def test_an_undefined_auc_stays_undefined():
    """A NaN AUC (a gate with no attackable records) is not rounded into a number; Prefect shows it empty."""
    broken = audit(1)
    broken["gates"]["iau"]["forget_auc_candidate"] = math.nan
    broken["steps"] = {}  # a batch resumed from gates.json: no gate step timed in this ledger row
    iau = ladder_rows(broken)[0]
    assert math.isnan(iau["AUC post"]) and iau["gate s"] is None


def test_step_rows_list_every_step_in_order_with_a_total():
    steps = {**STEPS, "audit": 0.07, "finish": 0.31, "cache-gradient": 0.0712, "export-model": 2.9666}
    rows = step_rows(steps)
    assert [r["step"] for r in rows] == [*steps, "total"]
    by_step = {r["step"]: r for r in rows}
    assert by_step["gate-iau"]["seconds"] == 12.3 and by_step["export-model"]["seconds"] == 3.0
    assert by_step["register"]["what"] == "registration" and by_step["cache-gradient"]["what"] == "gradient refresh"
    assert by_step["forget-data"]["what"].startswith("forgetting")
    assert by_step["unlearn-retrain"]["what"] == "unlearning (retrain)" and by_step["gate-iau"]["what"] == "gate (iau)"
    assert by_step["total"]["seconds"] == round(sum(steps.values()), 1)


def test_the_audit_shows_the_count_and_the_first_requests_only():
    markdown = audit_markdown(audit(1000))
    assert markdown.count("## Requests") == 1
    assert f"## Requests (1000, the first {REQUESTS_SHOWN} shown)" in markdown
    listed = [line for line in markdown.splitlines() if line.startswith("| 10")]
    assert [int(line.split("|")[1]) for line in listed] == list(range(1000, 1000 + REQUESTS_SHOWN))
    assert f"{1000 - REQUESTS_SHOWN} more" in markdown and "`iau requests list`" in markdown
    assert "audit/batch-7.json` on MLflow run run123" in markdown
    assert "erasure \\| art. 17" in markdown  # a `|` in a reason stays in its cell
    # the rest of the audit is audit_report's: outcome, each gate, the step table
    assert "# Deletion batch 7" in markdown and "## Gate for iau: failed" in markdown
    assert "## Steps (seconds)" in markdown and "| gate-iau | 12.35 |" in markdown


def test_a_small_batch_lists_every_request():
    markdown = audit_markdown(audit(3))
    assert "## Requests (3)" in markdown and "more:" not in markdown
    assert sum(line.startswith("| 100") for line in markdown.splitlines()) == 3


def test_artifact_keys_are_stable_and_valid_for_prefect():
    from prefect.types.names import raise_on_name_alphanumeric_dashes_only

    keys = [artifact_key(7), artifact_key(7, "ladder"), artifact_key(7, "steps")]
    assert keys == ["deletion-batch-7", "deletion-batch-7-ladder", "deletion-batch-7-steps"]
    assert [artifact_key(7), artifact_key(7, "ladder")] == keys[:2]  # a rerun of batch 7: the same keys
    for key in keys:
        assert raise_on_name_alphanumeric_dashes_only(key, "key") == key
    with pytest.raises(ValueError, match="not a Prefect artifact key"):
        artifact_key(7, "Ladder_v2")
