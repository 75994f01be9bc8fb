"""MLflow plumbing shared by the tasks: where the store is, runs with lineage, models in and out.

Runs are addressed by id through MlflowClient (the fluent 'active run' is per thread, and Prefect may run
tasks on other threads); the fluent API is used only inside a `with` block for mlflow.pytorch.log_model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import mlflow.pytorch
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from torch import nn

from iau_core.config import Params

STATE_DICT = "state_dict.pt"


def tracking_uri(repo_root: Path) -> str:
    """MLFLOW_TRACKING_URI when set (a server, for teams), else the embedded SQLite store in the project."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(repo_root / 'mlflow.db').resolve()}"


def configure(repo_root: Path, experiment: str) -> str:
    """Point MLflow at the store and return the experiment id, creating the experiment with local artifacts
    beside a SQLite database (a server keeps its own artifact root)."""
    uri = tracking_uri(repo_root)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=location)


def git_commit(repo_root: Path) -> str:
    """The code version: HEAD's sha, with '-dirty' when tracked files have uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, check=True).stdout
    try:
        sha = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def flatten(params: Params) -> dict[str, str]:
    """{'training.lr': '0.001', ...}: every hyperparameter as an MLflow param."""
    def walk(prefix: str, value: object, out: dict[str, str]) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner, out)
        else:
            out[prefix] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    out: dict[str, str] = {}
    walk("", params.model_dump(), out)
    return out


def cache_key(kind: str, data_version: str, params: Params, sections: tuple[str, ...]) -> str:
    """Content key for reusable artifacts: the data version plus every section that shapes the result."""
    dump = params.model_dump()
    payload = {"kind": kind, "data_version": data_version, "seed": params.seed,
               **{name: dump[name] for name in sections}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def start_run(experiment_id: str, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
    if parent_run_id:
        tags = {**tags, "mlflow.parentRunId": parent_run_id}
    return MlflowClient().create_run(experiment_id, run_name=name, tags=tags).info.run_id


def log_params(run_id: str, values: dict[str, str]) -> None:
    MlflowClient().log_batch(run_id, params=[Param(k, v) for k, v in values.items()])


def log_metrics(run_id: str, values: dict[str, float]) -> None:
    """Finite values only: a NaN (e.g. no speed-up for doing nothing) is left out rather than stored."""
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if math.isfinite(float(v))]
    MlflowClient().log_batch(run_id, metrics=metrics)


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    MlflowClient().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def finish(run_id: str, ok: bool = True) -> None:
    MlflowClient().set_terminated(run_id, status="FINISHED" if ok else "FAILED")


@contextmanager
def run(experiment_id: str, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> Iterator[str]:
    """A run that ends FINISHED when the block completes and FAILED when it raises, so a half-done run is
    never mistaken for a result (cached-run lookups only accept FINISHED)."""
    run_id = start_run(experiment_id, name, tags, parent_run_id)
    try:
        yield run_id
    except BaseException:
        finish(run_id, ok=False)
        raise
    finish(run_id, ok=True)


def find_finished_run(experiment_id: str, kind: str, key: str) -> str | None:
    """The newest finished run of this kind with this cache key, if any."""
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.kind = '{kind}' and tags.cache_key = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_model(run_id: str, model: nn.Module, input_example: torch.Tensor, registered_name: str | None = None) -> str:
    """Log the model twice over: as an MLflow model (browsable, servable, optionally registered) and as a
    plain state_dict, which is what the pipeline reloads (torch.load with weights_only=True).

    MLflow 3 exports PyTorch models as a traced graph, which needs a real input (a few records of the data);
    the requirement list is given, not inferred (inference re-imports the model in a subprocess: slow)."""
    model = model.cpu().eval()
    log_state_dict(run_id, model)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model, name="model", registered_model_name=registered_name,
            input_example=input_example.detach().cpu().numpy(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    if registered_name:
        version = info.registered_model_version
        return f"models:/{registered_name}/{version}"
    return info.model_uri


def log_state_dict(run_id: str, model: nn.Module) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / STATE_DICT
        torch.save(model.state_dict(), path)
        MlflowClient().log_artifact(run_id, str(path))


def load_state_dict(run_id: str) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=STATE_DICT, dst_path=tmp)
        return torch.load(path, weights_only=True, map_location="cpu")


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, text, artifact_file)
