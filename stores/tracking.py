"""MLflow plumbing shared by tasks, flows and studies: where the store is, runs with lineage, models in and out.

Runs are addressed by id through MlflowClient only: the fluent 'active run' is per thread (Prefect may run
tasks on other threads, or on a Dask worker in another process, which `use_store` points at the same store), and
leaving a fluent `with mlflow.start_run(...)` block marks the run FINISHED, which must happen only once every tag
and artifact is written (cached-run lookups trust FINISHED runs).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import mlflow
import mlflow.pytorch
import torch
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_BRANCH,
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)
from torch import nn

import iau_core
from iau_core.config import Params

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

STATE_DICT = "state_dict.pt"
MODEL_ARTIFACT = "model"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # a LoggedModel's registry versions (MLflow's mlflow_tags)
# The science's own sources, wherever they are installed: what a reusable model's content key hashes.
SCIENCE_PACKAGE = Path(iau_core.__file__).resolve().parent
# MLflow 3's UI opens an experiment without this tag in GenAI mode (a traces overview), not on its runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# MLflow refuses (does not truncate) a dataset digest longer than this (mlflow.utils.validation, 3.17).
MAX_DATASET_DIGEST_SIZE = 36


def tracking_uri(repo_root: Path) -> str:
    """MLFLOW_TRACKING_URI when set (a server, for teams), else the embedded SQLite store in the project."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(repo_root / 'mlflow.db').resolve()}"


def display_uri(uri: str) -> str:
    """A tracking URI fit for logs and messages: any password in it replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def use_store(repo_root: Path) -> str:
    """Point this process's MLflow client at the project's store and return its URI: what a task does first
    when it may run in another process (a Dask worker), where the flow's `configure` never ran. The URI comes
    from this process's environment, never from task parameters: a server URI may carry a password."""
    uri = tracking_uri(repo_root)
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)
    return uri


def configure(repo_root: Path, experiment: str) -> str:
    """Point MLflow at the store and return the experiment id, creating the experiment with local artifacts
    beside a SQLite database (a server keeps its own artifact root).

    The experiment is tagged as model development, also when it exists without the tag (created by an older
    version of this code), so the UI opens it on its runs; a kind someone set on purpose is left alone."""
    uri = tracking_uri(repo_root)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        if EXPERIMENT_KIND_TAG not in found.tags:
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def _git(repo_root: Path, *args: str) -> str:
    """stdout of a git command in repo_root; raises OSError or CalledProcessError outside a git repository."""
    return subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, check=True).stdout.strip()


def git_commit(repo_root: Path) -> str:
    """The code version: HEAD's sha, with '-dirty' when tracked files have uncommitted changes."""
    try:
        sha = _git(repo_root, "rev-parse", "HEAD")
        dirty = bool(_git(repo_root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def _git_or_none(repo_root: Path, *args: str) -> str | None:
    try:
        return _git(repo_root, *args) or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _user() -> str:
    """getpass.getuser() fails in containers whose uid has no passwd entry: MLflow itself then says 'unknown'."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


def _source_name(repo_root: Path) -> str:
    """The entry point as MLflow names it (sys.argv[0]), relative to the repository when it lies inside it,
    e.g. 'flows/unlearn.py' for `python flows/unlearn.py` and for `python -m flows.unlearn` alike."""
    main = sys.argv[0] if sys.argv and sys.argv[0] else "<console>"
    try:
        return Path(main).resolve().relative_to(repo_root.resolve()).as_posix()
    except (ValueError, OSError):
        return main


def source_tags(repo_root: Path, source_name: str | None = None) -> dict[str, str]:
    """MLflow's own source tags, which a run created through MlflowClient does not get (only the fluent
    mlflow.start_run adds them): the UI's Source, User and Version columns read these.

    The commit is HEAD's plain sha (MLflow links it to the repository; our `git_commit` tag keeps '-dirty').
    Outside a git repository there is no commit; with a detached HEAD there is no branch."""
    tags = {
        MLFLOW_SOURCE_NAME: source_name or _source_name(repo_root),
        MLFLOW_SOURCE_TYPE: "LOCAL",
        MLFLOW_USER: _user(),
    }
    if commit := _git_or_none(repo_root, "rev-parse", "HEAD"):
        tags[MLFLOW_GIT_COMMIT] = commit
        branch = _git_or_none(repo_root, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags[MLFLOW_GIT_BRANCH] = branch
    return tags


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
    # the count this process fixed at start (iau_core/runtime.py): another count gives another float trajectory
    out["torch_threads"] = str(torch.get_num_threads())
    return out


def science_code_version(package_dir: Path = SCIENCE_PACKAGE) -> str:
    """sha256 over the sorted relative paths and bytes of every .py file of the science package.

    Unlike the git commit, it changes exactly when the code that shapes a model changes: an edit to a flow,
    a README or a test keeps cached models, an uncommitted edit to iau_core does not reuse stale ones."""
    digest = hashlib.sha256()
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(kind: str, data_version: str, params: Params, sections: tuple[str, ...],
              code_version: str | None = None) -> str:
    """Content key for reusable artifacts: the data version, the science code version (science_code_version()
    unless given) and every params section that shapes the result."""
    dump = params.model_dump()
    payload = {"kind": kind, "data_version": data_version, "seed": params.seed,
               "code_version": code_version or science_code_version(),
               **{name: dump[name] for name in sections}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def start_run(experiment_id: str, name: str, tags: dict[str, str], parent_run_id: str | None = None, *,
              repo_root: Path | None = None, source_name: str | None = None) -> str:
    """Create a RUNNING run with MLflow's source tags (of repo_root, the project the run belongs to; by default
    the working directory) under the caller's tags; a caller's tag wins over a source tag of the same key."""
    tags = {**source_tags(repo_root or Path.cwd(), source_name), **tags}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
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


def finish(run_id: str, ok: bool = True, keep_end_time: bool = False) -> None:
    """End the run; with keep_end_time, at the end work_done recorded, if any (its Duration is then that work's)."""
    end = MlflowClient().get_run(run_id).info.end_time if keep_end_time else None
    MlflowClient().set_terminated(run_id, status="FINISHED" if ok else "FAILED", end_time=end)


def work_done(run_id: str) -> None:
    """Record now as the run's end time but leave it RUNNING: a method's run is finished only once the comparison
    has written its gaps (flows/unlearn.py), yet the UI's Duration should be the method's own work."""
    MlflowClient().set_terminated(run_id, status="RUNNING", end_time=int(time.time() * 1000))


@contextmanager
def run(experiment_id: str, name: str, tags: dict[str, str], parent_run_id: str | None = None, *,
        repo_root: Path | None = None, source_name: str | None = None) -> Iterator[str]:
    """A run that ends FINISHED when the block completes and FAILED when it raises, so a half-done run is
    never mistaken for a result (cached-run lookups only accept FINISHED)."""
    run_id = start_run(experiment_id, name, tags, parent_run_id, repo_root=repo_root, source_name=source_name)
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


def log_model(run_id: str, model: nn.Module, input_example: torch.Tensor, registered_name: str | None = None,
              description: str | None = None, name: str | None = None) -> str:
    """Log the model twice over: as an MLflow LoggedModel of the run (the run page's and the runs list's Models,
    the experiment's Models tab; browsable, servable, optionally registered with `description`) and as a plain
    state_dict on the run, which is what the pipeline reloads (torch.load with weights_only=True: exact).

    The run is addressed by id and its status is not touched: the LoggedModel is created in the run's own
    experiment with the run as its source, then filled by mlflow.pytorch.log_model(model_id=..., run_id=...),
    which links it to the run's outputs without a fluent run (leaving one would mark the run FINISHED). The run
    stays RUNNING until the caller has written the rest (e.g. its model_uri tag) and finishes it.
    MLflow 3 saves PyTorch as 'pt2' (torch.export), which traces the graph on a real input (a few records of
    the data; a batch of more than one keeps the batch dimension dynamic); the requirement list is given, not
    inferred (inference re-imports the model in a subprocess: slow). `name`: the LoggedModel's name (the Models
    column and tab show it), e.g. the method's; by default the registered name, else the run's name.

    Returns models:/<name>/<version> when registered, else models:/<model_id>."""
    model = model.cpu().eval()
    log_state_dict(run_id, model)
    client = MlflowClient()
    info = client.get_run(run_id).info
    # a LoggedModel's name may not hold / : . % or quotes (MLflow's check); a run's name may
    experiment_id = info.experiment_id
    name = name or registered_name or "".join("-" if c in "/:.%\"'" else c for c in info.run_name) or MODEL_ARTIFACT
    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id)
    mlflow.pytorch.log_model(
        model, name=name, model_id=logged.model_id, run_id=run_id, serialization_format="pt2",
        input_example=input_example.detach().cpu().numpy(),
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    if not registered_name:
        return f"models:/{logged.model_id}"
    version = register_logged_model(registered_name, run_id, logged.model_id, {}, description)
    return f"models:/{registered_name}/{version}"


def logged_model_id(run_id: str) -> str:
    """The newest LoggedModel the run produced (a rerun after a kill may have logged one before)."""
    outputs = MlflowClient().get_run(run_id).outputs
    ids = [o.model_id for o in (outputs.model_outputs if outputs else [])]
    if not ids:
        raise LookupError(f"run {run_id} has no logged model: log it with stores.tracking.log_model first")
    return ids[-1]


def register_logged_model(name: str, run_id: str, model_id: str, tags: dict[str, str],
                          description: str | None) -> str:
    """A new registry version of `name` from the LoggedModel `model_id` of `run_id`, with tags and description in
    the same call (a process killed between two calls never leaves an untagged version); returns its number."""
    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):  # registered before, as expected
            raise
    created = client.create_model_version(name, f"models:/{model_id}", run_id,
                                          tags={k: str(v) for k, v in tags.items()}, description=description,
                                          model_id=model_id)
    # what mlflow.register_model also writes: the UI's Logged models list reads the version from this tag (without
    # it the model shows "Not registered")
    versions = json.loads(client.get_logged_model(model_id).tags.get(MODEL_VERSIONS_TAG, "[]"))
    client.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps(
        [*versions, {"name": name, "version": str(created.version)}])})
    return str(created.version)


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


def log_table(run_id: str, table: pd.DataFrame, artifact_file: str) -> None:
    """A table the run page's artifact viewer shows as one (mlflow.log_table: a JSON artifact, NaN as null)."""
    MlflowClient().log_table(run_id, table, artifact_file)


def read_text(run_id: str, artifact_file: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_file,
                                                        dst_path=tmp)).read_text()


def log_figure(run_id: str, fig: Figure, artifact_file: str) -> None:
    """Save a matplotlib figure (format by the file's suffix, e.g. PNG) on the run, then close it: figures made
    through pyplot stay alive in its registry until closed, and a long flow makes many. (reporting.plots builds
    bare Figures, which pyplot never held; pyplot is not imported just to close them.)"""
    try:
        MlflowClient().log_figure(run_id, fig, artifact_file)
    finally:
        if (pyplot := sys.modules.get("matplotlib.pyplot")) is not None:
            pyplot.close(fig)


def log_data_version(run_id: str, name: str, data_version: str, source: str, context: str = "train") -> None:
    """Record the data version as an MLflow dataset input (the runs list's Dataset column): the name, the DVC
    md5 as the digest, and where it is described (e.g. the path of data.dvc), in MLflow's 'local' source form.

    MLflow stores a digest of at most 36 characters and refuses a longer one (it does not truncate); DVC's
    md5 of a folder is 32 hex digits plus '.dir', exactly 36, so it is kept whole. A dataset is keyed by
    (experiment, name, digest): the first source recorded for a version is the one every later run shows.
    The entity is built directly: MLflow's own source resolution warns that a local path matches two
    equivalent source classes."""
    if len(data_version) > MAX_DATASET_DIGEST_SIZE:
        raise ValueError(f"data version {data_version!r} is longer than MLflow's {MAX_DATASET_DIGEST_SIZE}-character "
                         "dataset digest")
    dataset = Dataset(name=name, digest=data_version, source_type="local", source=json.dumps({"uri": source}))
    entry = DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
    MlflowClient().log_inputs(run_id, datasets=[entry])


NOTE = "mlflow.note.content"  # the run page's Description, and the runs list's tooltip
MAX_TAG_VALUE = 8000  # MLflow refuses a longer tag value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH, 3.x)


def describe_comparison(parent_run_id: str, description: str, tags: dict[str, str], metrics: dict[str, float],
                        children: dict[str, tuple[str, dict[str, str]]]) -> None:
    """The answer where people look in the MLflow UI: the parent run's description (the verdicts and the compact
    table), its tags (best method, each method's verdict) and metrics; and each child run's one-line description
    and tags. `children`: run id -> (description, tags)."""
    if len(description) > MAX_TAG_VALUE:  # the answer comes first, so what is cut is the end of the table
        description = description[:MAX_TAG_VALUE - 40] + "\n… (cut: see comparison.md)"
    set_tags(parent_run_id, {NOTE: description, **tags})
    log_metrics(parent_run_id, metrics)
    for run_id, (text, child_tags) in children.items():
        set_tags(run_id, {NOTE: text, **child_tags})
