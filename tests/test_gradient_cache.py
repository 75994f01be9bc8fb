"""D's summed gradient cached on the champion's run (stores/champion.py) is only an optimisation: a damaged or
missing file is ignored with a warning and the batch computes the gradient afresh, instead of failing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from iau_core.unlearning.gradients import summed_gradient
from stores import registry
from stores.champion import GRADIENT_FILE, Champion, cached_summed_gradient

CPU = torch.device("cpu")


@pytest.fixture
def store(tmp_path: Path):
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    yield tmp_path
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def champion_with_cache(store: Path, digits_bundle):
    """A champion whose run holds a valid gradient file; returns (champion, the file in the artifact store)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(digits_bundle.train.x[0].numel(), 10))
    client = MlflowClient()
    experiment = client.create_experiment("cache", artifact_location=(store / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    cache = summed_gradient(model, digits_bundle.train, 128)
    local = store / GRADIENT_FILE
    torch.save({"grads": cache.grads, "count": cache.count, "ids_sha256": cache.ids_sha256}, local)
    client.log_artifact(run_id, str(local))
    stored = next((store / "artifacts").rglob(GRADIENT_FILE))
    champion = Champion(registry.Version("m", "1", run_id, {}), model, "dv0", "attack-run")
    return champion, stored


def test_a_valid_cache_is_used(champion_with_cache, digits_bundle):
    champion, _ = champion_with_cache
    cache = cached_summed_gradient(champion, digits_bundle.train, CPU)
    assert cache is not None and cache.count == len(digits_bundle.train)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong-shapes", "missing"])
def test_a_damaged_or_missing_cache_is_ignored_with_a_warning(champion_with_cache, digits_bundle, caplog, damage):
    champion, stored = champion_with_cache
    whole = stored.read_bytes()
    if damage == "truncated":
        stored.write_bytes(whole[: len(whole) // 2])
    elif damage == "garbage":
        stored.write_bytes(b"not a tensor file")
    elif damage == "empty":
        stored.write_bytes(b"")
    elif damage == "wrong-shapes":
        torch.save({"grads": [torch.zeros(3)], "count": len(digits_bundle.train), "ids_sha256": "x"}, stored)
    else:
        stored.unlink()
    with caplog.at_level(logging.WARNING, logger="stores.champion"):
        assert cached_summed_gradient(champion, digits_bundle.train, CPU) is None  # never raises
    if damage != "missing":  # a missing cache is normal (e.g. a killed cache step): no warning
        assert "damaged" in caplog.text and GRADIENT_FILE in caplog.text
