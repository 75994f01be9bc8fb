"""The stores a nightly batch writes to, thrown away after the benchmark: an MLflow store (SQLite, local
artifacts) and a DVC repository holding one dataset with a local default remote, both in a temporary folder. The
batch's registration and forgetting run on them through the pipeline's own functions (stores.tracking,
stores.registry, stores.data.forget_records), each part timed on its own.

Registration is what ops/batch.py does from opening the batch's run to moving the champion alias: the run and its
params, gates.json, the version registered by its weights (registry.register_weights: the state_dict, an empty
LoggedModel, the registry version), its tags and the alias. The servable copy (MLflow's pt2 program, which
torch.export traces: registry.export_servable) comes after the requests are done, and is timed as a part of its
own. The functions these call are timed as inner parts by wrapping them while they
run (the real functions still do the work), so a change inside them shows up here as a part gone or new, never as
a stale copy of the code.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from dvc.repo import Repo
from torch import nn

from benchmarks import PROJECT_ROOT
from iau_core.config import Params
from iau_core.sources import materialize, read_canonical
from stores import registry, tracking
from stores.data import forget_records, recorded_version

EXPERIMENT = "bench-batch-cost"
MODEL_NAME = "bench-batch-deployed"
# The functions registration calls, timed as its inner parts: (module, attribute, part), where the module has it.
INNER_PARTS = ((registry, "log_state_dict", "state_dict"), (tracking, "log_state_dict", "state_dict"),
               (registry, "register_logged_model", "registry_version"),
               (mlflow.pytorch, "log_model", "pt2_export (torch.export)"))

@dataclass
class Stores:
    root: Path  # the DVC repository (and the MLflow store's folder)
    dataset: str
    experiment_id: str
    record_ids: np.ndarray  # the dataset's sample ids, shuffled: each batch forgets the next ones
    taken: int = 0

    def next_ids(self, count: int) -> list[int]:
        ids = self.record_ids[self.taken:self.taken + count]
        if len(ids) < count:
            raise ValueError(f"{self.dataset} has {len(self.record_ids)} records; the batches asked for more")
        self.taken += count
        return [int(i) for i in ids]


@contextmanager
def throwaway_stores(dataset: str, seed: int = 0) -> Iterator[Stores]:
    """The stores in a temporary folder; MLflow points at them inside the block and back where it was after."""
    previous_env, previous_uri = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    with tempfile.TemporaryDirectory(prefix="iau-bench-batch-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        materialize(dataset, root / "data", PROJECT_ROOT)  # from the raw sources, as a fresh clone's data
        with Repo.init(str(root), no_scm=True) as repo:  # in this process: no dvc CLI start-up per step
            with repo.config.edit() as config:
                config["core"]["analytics"] = False
                config["core"]["remote"] = "local"
                config["remote"]["local"] = {"url": str(Path(tmp) / "dvc-remote")}
            repo.add(str(root / "data"))
            repo.push()  # the version a batch starts from is on the remote already, as in production
        _, records = read_canonical(root / "data", dataset)
        ids = np.random.default_rng(seed).permutation(records["sample_id"].to_numpy())
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        try:
            yield Stores(root, dataset, tracking.configure(root, EXPERIMENT), ids)
        finally:
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env
            mlflow.set_tracking_uri(previous_uri)


@contextmanager
def part(parts: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    parts[name] = parts.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def inner_parts(parts: dict[str, float]) -> Iterator[None]:
    """Time INNER_PARTS into `parts` while the block runs; the originals are back after it."""
    originals = [(owner, attr, getattr(owner, attr), name) for owner, attr, name in INNER_PARTS
                 if hasattr(owner, attr)]

    def timed(fn: Callable, name: str) -> Callable:
        def wrapper(*args, **kwargs):
            with part(parts, name):
                return fn(*args, **kwargs)
        return wrapper

    for owner, attr, fn, name in originals:
        setattr(owner, attr, timed(fn, name))
    try:
        yield
    finally:
        for owner, attr, fn, _ in originals:
            setattr(owner, attr, fn)


@dataclass
class Registration:
    parts: dict[str, float]  # seconds of each step on the critical path (their sum: registration)
    inner: dict[str, float]  # seconds of the functions those steps call (counted in parts or export)
    export: float  # seconds of the servable copy's export, after the requests


def register(stores: Stores, params: Params, model: nn.Module, example: torch.Tensor, gates: dict,
             batch: int, requests: int) -> Registration:
    """The batch's registration as ops/batch.py does it, and the servable copy's export after it (module
    docstring)."""
    parts: dict[str, float] = {}
    inner: dict[str, float] = {}
    data_version = recorded_version(stores.root)[0]
    tags = {"batch_id": batch, "method": "bench", "requests": requests, "parent_data_version": data_version}
    with inner_parts(inner):
        with part(parts, "open_run"):
            run_id = tracking.start_run(stores.experiment_id, f"nightly-batch-{batch}", {
                "kind": "deletion-batch", "batch_id": str(batch), "data_version": data_version})
            tracking.log_params(run_id, tracking.flatten(params))
            tracking.log_data_version(run_id, stores.dataset, data_version, "data.dvc")
        with part(parts, "gates_json"):
            tracking.log_text(run_id, json.dumps(gates, indent=2, default=str), "gates.json")
        with part(parts, "register_weights"):  # by its weights; the pt2 copy after the requests
            version = registry.register_weights(MODEL_NAME, run_id, model, "bench", tags, f"benchmark batch {batch}")
        with part(parts, "promote"):
            registry.tag(version, {"data_version": data_version})
            registry.promote(version)
            tracking.finish(run_id)
        start = time.perf_counter()  # the servable copy, after the requests are done (ops/batch.py)
        registry.export_servable(version, model, example)
        export = time.perf_counter() - start
    return Registration(parts, inner, export)


def forget(stores: Stores, count: int, batch: int) -> float:
    """Seconds of stores.data.forget_records for the next `count` records of the throwaway data."""
    ids = stores.next_ids(count)
    start = time.perf_counter()
    forget_records(stores.root, stores.dataset, ids, f"benchmark batch {batch}")
    return time.perf_counter() - start
