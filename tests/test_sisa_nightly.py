"""The nightly batch on a sharded champion (SISA, iau_core/sharding.py): `sisa` as the ladder's exact rung.

A project of its own (digits, a few epochs) whose params.yaml keeps the single model (training.shards: 1), its
champion trained by `iau train --set training.shards=4 --set training.slices=2` (a Prefect flow, against a real
Prefect server on loopback), then batches run by `iau nightly` in-process. The batch takes the layout from the
champion (stores.champion.champion_context), not from params.yaml:
- a `high` tier request goes straight to `sisa`, which retrains only the record's shard; the new champion is
  promoted, its audit and `iau requests show` say exact and name the shard, and the checkpoints on the new
  version's run were all trained on records that exclude the forgotten one;
- a `sisa` batch killed right after `register` (tests/nightly_kill.py) finishes on rerun, exactly once.
The generic batch (kills at every step, faults) is test_nightly.py's; the rendering of the exact line is checked
here without a project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.nightly_helpers import (
    add_requests,
    audit_of,
    champion_of,
    iau,
    kill_after,
    ledger_of,
    pick,
    trained_champion,
    training_ids,
)

SHARDS, SLICES = 4, 2
DEPLOYED = "sisa-test-deployed"
SINGLE = {  # params.yaml: one network; the champion's layout comes with `iau train --set` (LAYOUT)
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 400, "val_size": 200, "test_size": 300, "shadow_pool_size": 600},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 3, "patience": 2, "shards": 1, "slices": 1},
    "mia": {"num_shadow": 2, "epochs": 5},
    "lira": {"num_reference": 2},
    "tracking": {"experiment": "sisa-nightly-test", "registered_model": "sisa-test-base",
                 "deployed_model": DEPLOYED},
    # test-scale shard models move by several validation points between trainings (as tests/nightly_helpers.py's SMALL)
    "nightly": {"drift": {"max_iau_batches": 50, "max_forgotten_share": 0.5}, "gate": {"max_val_acc_drop": 15.0}},
}
LAYOUT = ("--set", f"training.shards={SHARDS}", "--set", f"training.slices={SLICES}")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A single-model project (sandbox/projects.py) whose champion `iau train --set` made sharded."""
    from sandbox.projects import make_project

    with trained_champion(make_project(tmp_path_factory.mktemp("sisa") / "project", SINGLE), tmp_path_factory,
                          *LAYOUT) as root:
        yield root


def champion():
    return champion_of(DEPLOYED)


def add_high(project: Path, ids: list[int]) -> None:
    add_requests(project, ids, "high", "test: high-risk erasure")


def shard_of(record: int) -> int:
    from iau_core.sharding import assign

    shard, _ = assign(np.array([record]), SHARDS, SLICES)
    return int(shard[0])


def assert_checkpoints_exclude(run_id: str, parent_run_id: str, project: Path, record: int) -> None:
    """The checkpoints on the new version's run: every slice's digest is that of the current D's records in it (so
    none was trained on the forgotten record, which D no longer holds), and every shard but the record's kept its
    parent's weights untouched (only that shard was retrained)."""
    from iau_core.sharding import ids_digest, slice_positions
    from stores.artifacts import load_checkpoints

    train = training_ids(project)
    assert record not in set(train.tolist())
    after, before = load_checkpoints(run_id), load_checkpoints(parent_run_id)
    assert after is not None and before is not None and len(after.shards) == SHARDS
    positions = slice_positions(train, SHARDS, SLICES)
    for s, history in enumerate(after.shards):
        assert history.digests == [ids_digest(train[where]) for where in positions[s]], s
        unchanged = all(torch.equal(history.after_slice[-1][k], v) for k, v in before.shards[s].after_slice[-1].items())
        assert unchanged == (s != shard_of(record)), s
        assert (history.digests == before.shards[s].digests) == (s != shard_of(record)), s


@pytest.mark.slow
def test_a_high_tier_request_goes_to_sisa_which_retrains_only_its_shard(project):
    """params.yaml says one network, the champion was trained with 4 shards x 2 slices: the batch follows the
    champion, and says in its log and on its run that the two differ."""
    from mlflow import MlflowClient

    from iau_core.config import load_params

    parent = champion()
    assert load_params(project / "params.yaml").training.shards == 1
    assert MlflowClient().get_run(parent.run_id).data.params["training.shards"] == str(SHARDS)
    [record] = pick(project, 1)
    add_high(project, [record])
    night = iau(project, "nightly")
    new = champion()
    layout = f"{SHARDS} shard(s) x {SLICES} slice(s), params.yaml says training.shards=1, training.slices=1"
    assert layout in night.stderr and layout in MlflowClient().get_run(new.run_id).data.tags["shard_layout"]
    assert int(new.version) > int(parent.version)
    assert new.tags["method"] == "sisa" and new.tags["exact"] == "True"
    batch_id = new.tags["batch_id"]
    audit = audit_of(new.run_id, batch_id)
    assert audit["exact"] is True and audit["method"] == "sisa" and "high-tier" in audit["escalation"]
    assert list(audit["gates"]) == ["sisa"]  # straight to the exact rung: no approximate rung, no full retraining
    assert audit["retrained_shards"] == str(shard_of(record)) and audit["shards_retrained"] == 1
    assert_checkpoints_exclude(new.run_id, parent.run_id, project, record)
    # an exact model restarts the drift counters, as retraining does
    row = ledger_of(project).current_champion()
    assert row.model_version == str(new.version) and row.iau_batches_since_retrain == 0
    assert row.forgotten_since_retrain == 0
    shown = iau(project, "requests", "show", str(record)).stdout
    assert "done" in shown and f"exact (sisa; shards retrained: {shard_of(record)} of {SHARDS}" in shown, shown


@pytest.mark.slow
def test_a_sisa_batch_killed_after_register_finishes_on_rerun(project):
    parent = champion()
    [record] = pick(project, 1)
    add_high(project, [record])
    kill_after(project, "register")
    assert champion().version == parent.version  # registered, not promoted yet
    iau(project, "nightly")  # resumes the batch after its registration: no second unlearning
    new = champion()
    assert new.tags["method"] == "sisa" and new.tags["parent_version"] == str(parent.version)
    from mlflow import MlflowClient

    assert len(MlflowClient().search_model_versions(f"name = '{DEPLOYED}' and tags.batch_id = "
                                                    f"'{new.tags['batch_id']}'")) == 1
    rows = [r for r in ledger_of(project).list_requests() if r.sample_id == record]
    assert [r.status for r in rows] == ["done"] and rows[0].model_version == str(new.version)
    audit = audit_of(new.run_id, new.tags["batch_id"])
    assert audit["resumed"] and audit["exact"] is True
    # the checkpoints were stored with the registration, so the killed run left them on the new version's run
    assert_checkpoints_exclude(new.run_id, parent.run_id, project, record)


def test_the_receipt_names_the_shards_an_exact_rung_retrained():
    """cli/render.gate_verdicts: an accepted exact rung adds the exact line, an approximate or rejected one none."""
    from types import SimpleNamespace

    from cli.render import gate_verdicts

    gate = {"privacy_verdict": "inconclusive", "attack": "lira", "forget_auc_champion": 0.6,
            "forget_auc_candidate": 0.55, "auc_threshold": 0.9, "members": 1, "val_acc_drop": 0.5, "seconds": 2.0}
    detail = {"iau": {**gate, "accepted": False, "exact": False},
              "sisa": {**gate, "accepted": True, "exact": True, "shards": 4, "slices_retrained": 2,
                       "retrained_shards": "1"}}
    lines = gate_verdicts([SimpleNamespace(kind="gate", detail=detail)])
    assert len(lines) == 3 and lines[2].startswith("exact (sisa; shards retrained: 1 of 4, 2 slice(s))")
    retrained = gate_verdicts([SimpleNamespace(kind="gate", detail={"retrain": {**gate, "accepted": True,
                                                                                  "exact": True}})])
    assert retrained[1] == "exact (retrain): the new model was trained without the record"
    rejected = {"sisa": {**detail["sisa"], "accepted": False}}
    assert len(gate_verdicts([SimpleNamespace(kind="gate", detail=rejected)])) == 1


def test_the_ledger_lets_an_escalated_batch_finish_with_every_exact_method_and_no_other():
    """The ledger names the exact methods without importing them (ledger.batches.EXACT_FINISHERS): they must stay
    iau_core.deletion.is_exact's, or an escalated sisa batch could never finish."""
    from iau_core.config import METHOD_NAMES
    from iau_core.deletion import is_exact
    from ledger.batches import EXACT_FINISHERS

    assert set(EXACT_FINISHERS) == {m for m in (*METHOD_NAMES, "retrain") if is_exact(m)}
