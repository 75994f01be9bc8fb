"""`iau doctor`'s advice (ops/doctor.py): one consistent next step per state. The end-to-end cases (a killed
batch released, a lost MLflow store refused) run against real stores in tests/test_nightly.py."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger import ChampionView
from ops.doctor import Diagnosis, advice

CHAMPION = ChampionView(model_version="3", method="train", batch_id=None, data_version="a" * 32 + ".dir",
                        promoted_at=datetime(2026, 12, 7, tzinfo=UTC), iau_batches_since_retrain=0,
                        forgotten_since_retrain=0, train_size_at_retrain=100)


def test_a_lost_store_after_a_batch_registered_advises_the_restore_only():
    """Before issue 30 it said both "`iau nightly` finishes it" and "restore the store"; the batch can only be
    finished once the registry is back, so the advice names the restore first and the batch after it."""
    lost = Diagnosis(CHAMPION, pending=2, released=[4], to_finish=[5], data_version="b" * 32 + ".dir",
                     problem="the model registry has no such version: it has lost its history. Restore ...")
    lines = advice(lost)
    assert lines[0].startswith("released batch 4")
    assert "once the MLflow store is restored" in lines[1] and "batch 5" in lines[1]
    assert not any(line.endswith("`iau nightly` finishes it") for line in lines)
    assert not any("iau train" in line for line in lines)  # which champion counts is unknown until the restore
    assert not lost.healthy


def test_a_healthy_registry_gets_the_finish_and_the_data_notice():
    fine = Diagnosis(CHAMPION, pending=0, to_finish=[5], data_version="b" * 32 + ".dir")
    assert advice(fine) == ["batch 5 has a registered model version: `iau nightly` finishes it",
                            f"notice: data.dvc names data version {'b' * 32}.dir, the champion was made on "
                            f"{'a' * 32}.dir; `iau train` retrains on the current data"]
    assert fine.healthy
    assert advice(Diagnosis(CHAMPION, pending=0, data_version=CHAMPION.data_version)) == []
