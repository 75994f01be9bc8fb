"""A throwaway MLflow store with bare runs standing for champions' runs, for tests of what stores/champion.py
writes onto a champion's run and reads back (test_gradient_cache.py, test_refresh.py); not a test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from torch import nn

from stores import registry
from stores.champion import Champion


@contextmanager
def sqlite_store(folder: Path) -> Iterator[Path]:
    """This process's MLflow tracking in a SQLite file under `folder` until the block ends."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    try:
        yield folder
    finally:
        mlflow.set_tracking_uri(previous)


def new_runs(store: Path, experiment: str, count: int = 1) -> tuple[str, list[str]]:
    """A new experiment whose artifacts live under `store`/artifacts, and `count` empty runs of it."""
    client = MlflowClient()
    experiment_id = client.create_experiment(experiment, artifact_location=(store / "artifacts").as_uri())
    return experiment_id, [client.create_run(experiment_id).info.run_id for _ in range(count)]


def champion_on(run_id: str, model: nn.Module, version: str = "1") -> Champion:
    """`model` as version `version` of a registered model whose run is `run_id` (no registry entry needed: the
    gradient cache reads the run only)."""
    return Champion(registry.Version("m", version, run_id, {}), model, "dv0", "attack-run")
