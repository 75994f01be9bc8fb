"""The nightly ladder (nightly.ladder): its validation, the order the rungs are tried in (iau_core.deletion.
climb_ladder, with gate results made up here), what each attempt leaves in the CLI, and a batch whose step changed
nothing finishing on the champion in the ledger instead of a new version."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from cli.render import gate_verdicts, kept_champion, receipt
from iau_core.config import ParamsError, load_params
from iau_core.deletion import FAILED, INCONCLUSIVE, PASSED, GateResult, climb_ladder, rejection_reason, rungs
from ledger import Ledger, LedgerError
from tests.ledger_calls import finish

REPO = Path(__file__).resolve().parents[1]
D = set(range(100, 200))


# --- nightly.ladder in params.yaml ------------------------------------------------------------------------------


def test_the_default_ladder_is_iau_then_salun_then_retrain():
    assert load_params(REPO / "params.yaml").nightly.ladder == ("iau", "salun", "retrain")
    assert load_params(REPO / "params.yaml", {"nightly": {"ladder": ["iau", "retrain"]}}).nightly.ladder == \
        ("iau", "retrain")


def test_a_ladder_of_registry_methods_ending_in_retrain_is_accepted():
    params = load_params(REPO / "params.yaml", {"nightly": {"ladder": ["iau", "finetune", "retrain"]}})
    assert params.nightly.ladder == ("iau", "finetune", "retrain")
    assert load_params(REPO / "params.yaml", {"nightly": {"ladder": ["retrain"]}}).nightly.ladder == ("retrain",)


@pytest.mark.parametrize(("ladder", "expected"), [
    (["iau", "bogus", "retrain"], "unknown method(s) ['bogus']"),
    (["iau", "retrain_alt"], "unknown method(s) ['retrain_alt']"),  # a reference, not a rung
    (["iau"], "the last rung must be 'retrain'"),
    (["retrain", "iau"], "the last rung must be 'retrain'"),
    ([], "the last rung must be 'retrain'"),
    (["iau", "iau", "retrain"], "listed twice: ['iau']"),
])
def test_a_bad_ladder_is_refused_naming_the_key(ladder, expected):
    with pytest.raises(ParamsError) as refused:
        load_params(REPO / "params.yaml", {"nightly": {"ladder": ladder}})
    assert "nightly.ladder" in str(refused.value) and expected in str(refused.value)


# --- the rungs, in order ----------------------------------------------------------------------------------------


def gate_result(verdict: str, utility_ok: bool = True, unchanged: bool = False) -> GateResult:
    reasons = [] if verdict == PASSED and utility_ok else [f"made up: {verdict}"]
    return GateResult(verdict == PASSED and utility_ok, reasons, verdict, utility_ok, "lira", 90.0, 89.5, 0.5,
                      0.7, 0.55, 0.6, 0.1, unchanged, 100, 300)


class FakeRungs:
    """attempt() for climb_ladder: each method's made-up gate result, and a record of what ran, in order."""

    def __init__(self, results: dict[str, GateResult]) -> None:
        self.results, self.ran, self.rejected_before = results, [], {}

    def __call__(self, method: str, rejected: list) -> tuple[str, GateResult, float]:
        self.ran.append(method)
        self.rejected_before[method] = [a.method for a in rejected]
        return f"model-{method}", self.results[method], float(len(self.ran))


def test_the_first_rung_that_passes_is_promoted_and_later_rungs_never_run():
    attempt = FakeRungs({"iau": gate_result(PASSED), "finetune": gate_result(PASSED),
                         "retrain": gate_result(PASSED)})
    candidate, attempts = climb_ladder(["iau", "finetune", "retrain"], attempt, "promote")
    assert candidate == "model-iau" and attempt.ran == ["iau"]
    assert [(a.method, a.accepted, a.seconds) for a in attempts] == [("iau", True, 1.0)]


def test_a_failing_rung_is_recorded_and_the_next_one_tried():
    attempt = FakeRungs({"iau": gate_result(FAILED), "finetune": gate_result(PASSED),
                         "retrain": gate_result(PASSED)})
    candidate, attempts = climb_ladder(["iau", "finetune", "retrain"], attempt, "promote")
    assert candidate == "model-finetune" and attempt.ran == ["iau", "finetune"]
    assert [(a.method, a.accepted) for a in attempts] == [("iau", False), ("finetune", True)]
    assert attempt.rejected_before == {"iau": [], "finetune": ["iau"]}
    record = attempts[0].as_dict()  # what gates.json, the audit and the ledger keep per rung
    assert record["privacy_verdict"] == FAILED and record["seconds"] == 1.0 and record["accepted"] is False
    assert {"forget_auc_champion", "forget_auc_candidate", "auc_threshold", "val_acc_drop"} <= record.keys()


def test_retrain_is_the_last_resort_and_the_reason_names_every_rejected_rung():
    attempt = FakeRungs({"iau": gate_result(FAILED), "finetune": gate_result(PASSED, utility_ok=False),
                         "retrain": gate_result(INCONCLUSIVE)})
    candidate, attempts = climb_ladder(["iau", "finetune", "retrain"], attempt, "promote")
    # an inconclusive retrain is promoted: there is nothing stronger to fall back to
    assert candidate == "model-retrain" and attempt.ran == ["iau", "finetune", "retrain"]
    assert attempt.rejected_before["retrain"] == ["iau", "finetune"]
    reason = rejection_reason(attempts[:2])
    assert reason.startswith("iau: gate failed: made up: failed") and "finetune: gate failed" in reason


def test_every_rung_rejected_returns_no_candidate_with_every_attempt():
    attempt = FakeRungs({"iau": gate_result(FAILED), "retrain": gate_result(FAILED)})
    candidate, attempts = climb_ladder(["iau", "retrain"], attempt, "promote")
    assert candidate is None and [a.method for a in attempts] == ["iau", "retrain"]


def test_inconclusive_rungs_promote_or_climb_by_policy():
    results = {"iau": gate_result(INCONCLUSIVE), "ssd": gate_result(INCONCLUSIVE),
               "retrain": gate_result(INCONCLUSIVE)}
    assert climb_ladder(["iau", "ssd", "retrain"], FakeRungs(results), "promote")[0] == "model-iau"
    attempt = FakeRungs(results)
    candidate, attempts = climb_ladder(["iau", "ssd", "retrain"], attempt, "retrain")
    assert candidate == "model-retrain" and attempt.ran == ["iau", "ssd", "retrain"]
    assert "iau: gate inconclusive, policy retrain: " in rejection_reason(attempts[:2])


def test_high_tier_or_drift_skips_the_approximate_rungs():
    assert rungs(("iau", "finetune", "retrain"), None) == ["iau", "finetune", "retrain"]
    assert rungs(("iau", "finetune", "retrain"), "1 high-tier request(s) in the batch") == ["retrain"]


def test_on_a_sharded_champion_sisa_is_the_exact_rung_before_retraining():
    """sisa goes in before retrain (once), a high-tier or drift batch goes to it first, and a single-network
    champion never runs it (there it would be retraining twice)."""
    high = "1 high-tier request(s) in the batch"
    assert rungs(("iau", "salun", "retrain"), None, sharded=True) == ["iau", "salun", "sisa", "retrain"]
    assert rungs(("iau", "sisa", "retrain"), None, sharded=True) == ["iau", "sisa", "retrain"]
    assert rungs(("iau", "salun", "retrain"), high, sharded=True) == ["sisa", "retrain"]
    assert rungs(("iau", "sisa", "retrain"), None) == ["iau", "retrain"]
    assert rungs(("iau", "sisa", "retrain"), high) == ["retrain"]


class SisaRungs(FakeRungs):
    """Candidates that carry choices, as MethodResult does: sisa's say which shards it retrained."""

    def __call__(self, method: str, rejected: list):
        _, result, seconds = super().__call__(method, rejected)
        choices = {"exact": True, "shards": 4, "slices": 2, "shards_retrained": 1, "slices_retrained": 2,
                   "retrained_shards": "3"} if method == "sisa" else {"eta": 0.1}
        return type("Candidate", (), {"method": method, "choices": choices})(), result, seconds


def test_the_batch_record_says_exact_and_names_the_shards_sisa_retrained():
    attempt = SisaRungs({"iau": gate_result(FAILED), "sisa": gate_result(INCONCLUSIVE),
                         "retrain": gate_result(PASSED)})
    candidate, attempts = climb_ladder(["iau", "sisa", "retrain"], attempt, "retrain")
    assert candidate.method == "sisa" and attempt.ran == ["iau", "sisa"]  # exact: inconclusive promotes it
    gates = {a.method: a.as_dict() for a in attempts}
    assert gates["iau"]["exact"] is False and "retrained_shards" not in gates["iau"]
    assert gates["sisa"]["exact"] is True and gates["sisa"]["retrained_shards"] == "3"
    assert (gates["sisa"]["shards_retrained"], gates["sisa"]["slices_retrained"]) == (1, 2)


# --- what `iau requests show` prints of the attempts -------------------------------------------------------------


class Event:
    def __init__(self, kind: str, detail: dict, sample_id: int | None = None) -> None:
        self.kind, self.detail, self.sample_id = kind, detail, sample_id


def test_requests_show_lists_every_attempt_with_its_numbers_and_seconds():
    failed = {**gate_result(FAILED).as_dict(), "seconds": 0.25, "accepted": False}
    passed = {**gate_result(PASSED).as_dict(), "seconds": 3.5, "accepted": True}
    lines = gate_verdicts([Event("gate", {"iau": failed, "finetune": passed})])
    assert len(lines) == 2
    assert lines[0].startswith("privacy gate (iau, lira): failed; champion AUC 0.700, after 0.550, smallest "
                               "detectable 0.600 for 100 records; val acc drop 0.500; 0.25 s; rejected")
    assert lines[1].startswith("privacy gate (finetune, lira): passed") and lines[1].endswith("3.50 s; accepted")
    old = gate_result(PASSED).as_dict()  # a gate recorded before the ladder: no seconds, no accepted
    assert gate_verdicts([Event("gate", {"iau": old})])[0].endswith("val acc drop 0.500")


# --- an unchanged candidate: no new version, the requests done on the champion ----------------------------------


@pytest.fixture
def ledger(tmp_path):
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        opened.record_champion("1", data_version="dv0", train_size=100)
        yield opened


def test_a_batch_that_changed_nothing_finishes_on_the_champion(ledger):
    ledger.add_requests([101, 102], "gdpr art. 17", "normal", D)
    batch = ledger.open_batch("1", "dv0", "iau")
    gates = {"iau": {**gate_result(INCONCLUSIVE, unchanged=True).as_dict(), "seconds": 0.1, "accepted": True}}
    with pytest.raises(LedgerError, match="not the recorded champion"):
        ledger.keep_champion(batch.id, "7", "iau", gates)
    ledger.keep_champion(batch.id, "1", "iau", gates)
    ledger.keep_champion(batch.id, "1", "iau", gates)  # a rerun repeating itself
    with pytest.raises(LedgerError, match="keeps the champion 1"):
        finish(ledger, batch.id, "2", "dv1", "iau", gates, "run")
    finish(ledger, batch.id, "1", "dv1", "iau", gates, "run")
    finish(ledger, batch.id, "1", "dv1", "iau", gates, "run")  # idempotent
    requests = {r.sample_id: r for r in ledger.list_requests()}
    assert {(r.status, r.model_version, r.data_version) for r in requests.values()} == {("done", "1", "dv1")}
    champion = ledger.current_champion()  # still version 1, now on the smaller data, its records counted
    assert (champion.model_version, champion.data_version) == ("1", "dv1")
    assert (champion.iau_batches_since_retrain, champion.forgotten_since_retrain) == (0, 2)
    assert ledger.batch(batch.id).model_version == "1"
    request, events = ledger.history(101)
    assert kept_champion(request, events) and [e.kind for e in events].count("unchanged") == 1
    shown = receipt(request, None, kept_champion(request, events))
    assert "no change: the champion already showed no more membership" in shown and "version 1 serves on" in shown


def test_a_batch_finishes_with_any_ladder_method_after_the_migration(ledger):
    ledger.add_requests([101], "gdpr art. 17", "normal", D)
    batch = ledger.open_batch("1", "dv0", "finetune")
    assert batch.method == "finetune"
    finish(ledger, batch.id, "2", "dv1", "finetune", {"finetune": {"passed": True}}, "run")
    assert ledger.current_champion().method == "finetune"
    with pytest.raises(LedgerError, match="not a method name"):
        ledger.open_batch("2", "dv1", "Drop Table")


def test_migration_0003_keeps_the_rows_of_an_older_ledger(tmp_path):
    from alembic import command

    from ledger.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:  # a ledger as it was before the ladder, with a finished batch
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.exec_driver_sql("INSERT INTO champions (model_version, method, data_version, promoted_at, "
                                   "iau_batches_since_retrain, forgotten_since_retrain, train_size_at_retrain) "
                                   "VALUES ('1', 'train', 'dv0', '2026-12-01 00:00:00', 0, 0, 100)")
    engine.dispose()
    with Ledger(url) as upgraded:
        assert upgraded.current_champion().method == "train"
        upgraded.add_requests([101], "gdpr", "normal", D)
        batch = upgraded.open_batch("1", "dv0", "ssd")
        finish(upgraded, batch.id, "2", "dv1", "ssd", {}, None)
        assert upgraded.current_champion().method == "ssd"


def test_a_batch_stops_its_iterative_rungs_by_the_nightly_stop_rule():
    """make run compares methods under unlearning.stop_rule; a batch replaces it with nightly.stop_rule (by default
    the self-check at AUC 0.5), and nothing else of the unlearning settings."""
    from iau_core.deletion import batch_unlearning

    params = load_params(REPO / "params.yaml")
    batch = batch_unlearning(params)
    assert batch.stop_rule.target == "self_check" and batch.stop_rule.chance_z == 0.0
    assert params.unlearning.stop_rule.target == "heldout_loss"
    assert batch.model_copy(update={"stop_rule": params.unlearning.stop_rule}) == params.unlearning
