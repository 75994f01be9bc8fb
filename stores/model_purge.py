"""The models forget too: removing the weights that were trained on a data version that still held a forgotten
record, once the retention window has passed: the champion that first excluded the record has served
`nightly.purge.model_retention_batches` batches (default 1) and `model_retention_hours` have passed.

The data purge (stores/purge.py) removes old data versions; this removes what was learned from them:
- every registry version (of the deployed model and of the experiment's base model) whose run's weights belong
  to such a data version, with its LoggedModel and the LoggedModel's files;
- on every such run of the experiment (`iau train`, nightly batches, `make run`'s base models and the unlearned
  models of its methods), also soft-deleted runs (MLflow leaves their files, mlflow #1555): `state_dict.pt`,
  the `model/` folder of older runs, a sharded model's `shard_checkpoints/` and `summed_gradient.pt`;
- the cached summed gradient of every champion but the live one (it is a sum over the D of its day).

What stays: the live champion (always), whatever was trained on the current data version or on one that held no
forgotten record, the reference-attack runs (fitted on the shadow pool, which requests never touch), and every
run's tags, params, metrics, audit and gates files: metadata, not weights. Registry versions are deleted through
MLflow, which keeps their tags; the ledger keeps each removed version's tags in the purge's plan too.

Which data versions held a forgotten record comes from the ledger: a done batch's parent data version held its
records, and so did every version before it; only the current one (data.dvc) holds none.

A purge is planned in the ledger before anything is removed, and the next run finishes a plan a killed run left
(ops/purge.py runs it, under the nightly lock, and decides the receipts).
Files are removed from the artifact store when it is a local folder (`mlartifacts/`); for another store the
purge says which artifact URIs it could not remove.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from iau_core.config import Params
from ledger import Ledger
from stores import registry
from stores.artifacts import CHECKPOINTS_DIR
from stores.champion import GRADIENT_FILE
from stores.data import recorded_version
from stores.tracking import MODEL_ARTIFACT, STATE_DICT, display_uri

# what a run holds of its model (model/: runs before LoggedModels; a sharded model's checkpoints, SISA's)
WEIGHT_ARTIFACTS = (STATE_DICT, MODEL_ARTIFACT, CHECKPOINTS_DIR)
KEEP_KINDS = ("reference-attack",)  # fitted on the shadow pool only: no deletion request reaches them


@dataclass(frozen=True)
class Removal:
    kind: str  # registry-version | logged-model | file
    target: str  # name/version, model id, or run id/artifact
    why: str
    path: str | None = None  # the local file or folder, for kind file


@dataclass
class ModelPurgeReport:
    """What a model purge removed, kept and could not remove (with why); names no credentials."""

    purge_id: int
    champion: str
    current_data_version: str
    removed: list[Removal] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    not_removed: list[str] = field(default_factory=list)
    cleared_data_versions: list[str] = field(default_factory=list)
    receipts: list[int] = field(default_factory=list)  # sample ids whose earlier weights are now all gone
    finished_earlier: list[int] = field(default_factory=list)  # purges a killed run left, finished first

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """What the ledger keeps of it."""
        return {"removed": [asdict(r) for r in self.removed], "kept": self.kept, "not_removed": self.not_removed}

    def to_markdown(self) -> str:
        lines = [f"# Purge {self.purge_id} of model weights that saw forgotten records\n",
                 f"champion (kept): {self.champion}; current data version `{self.current_data_version}`\n"]
        if self.finished_earlier:
            lines.append(f"finished the interrupted purge(s) {self.finished_earlier} first")
        lines.append(f"removed ({len(self.removed)}):" + ("" if self.removed else " nothing"))
        lines += [f"- {r.kind} `{r.target}`: {r.why}" for r in self.removed]
        lines.append("kept:" + ("" if self.kept else " nothing"))
        lines += [f"- {why}" for why in self.kept]
        lines.append("could not remove:" + ("" if self.not_removed else " nothing"))
        lines += [f"- {why}" for why in self.not_removed]
        lines.append("data versions left without weights: "
                     + (", ".join(f"`{v}`" for v in self.cleared_data_versions) or "none"))
        lines.append(f"receipts given to {len(self.receipts)} request(s)")
        return "\n".join(lines) + "\n"


def make_plan(repo_root: Path, params: Params, ledger: Ledger, experiment_id: str, now: datetime) -> dict:
    """Every removal this purge will make, decided before any is made (written to the ledger as the plan)."""
    client = MlflowClient()
    current = recorded_version(repo_root)[0]
    champion = registry.champion(params.tracking.deployed_model)
    due, held = data_versions_due(ledger, current, params, now)
    actions: list[dict] = []
    kept: list[str] = []
    not_removed: list[str] = []
    blocked: set[str] = set()  # data versions some of whose weights stay (kept or not removable)
    doomed_runs: dict[str, str] = {}  # run id -> its weights' data version
    runs = client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=50_000)
    for run in runs:
        tags, run_id = run.data.tags, run.info.run_id
        version = weights_data_version(tags)
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        if run_id == champion.run_id:
            if version in held:
                blocked.add(version)
                kept.append(f"run {run_id}: the live champion {champion.uri}, although its data version {version} "
                            "held forgotten records (promote a newer champion)")
            continue
        if GRADIENT_FILE in artifacts and not (version in held and version in due):
            actions.append(file_action(run, GRADIENT_FILE, "cached summed gradient of a superseded champion"))
        if version not in held:
            continue
        if tags.get("kind") in KEEP_KINDS:
            kept.append(f"run {run_id} ({tags['kind']}): fitted on the shadow pool only, which no request reaches")
            continue
        if version not in due:
            blocked.add(version)
            kept.append(f"run {run_id} ({run.info.run_name}): data version {version} held forgotten records; "
                        f"retained until {retained_until(ledger, version, params)}")
            continue
        doomed_runs[run_id] = version
        why = f"trained on data version {version}, which held forgotten records"
        for name in (*WEIGHT_ARTIFACTS, GRADIENT_FILE):
            if name in artifacts:
                actions.append({**file_action(run, name, why), "data_version": version})
    for model in logged_models(client, experiment_id):
        if model.source_run_id in doomed_runs:
            why = f"LoggedModel of run {model.source_run_id} ({doomed_runs[model.source_run_id]})"
            actions.append({"kind": "logged-model", "target": model.model_id, "why": why})
            actions.append({**location_action(model.artifact_location, f"{model.model_id}/artifacts", why),
                            "data_version": doomed_runs[model.source_run_id]})
    for name in {params.tracking.deployed_model, params.tracking.registered_model}:
        for found in registry_versions(client, name):
            if found.run_id in doomed_runs:
                actions.append({"kind": "registry-version", "target": f"{name}/{found.version}",
                                "why": f"its weights were trained on data version {doomed_runs[found.run_id]}, "
                                       "which held forgotten records", "tags": dict(found.tags)})
    for action in actions:
        if action["kind"] == "file" and action["path"] is None:
            if action.get("data_version"):
                blocked.add(action["data_version"])
            not_removed.append(f"{action['target']}: the artifact store {action['uri']} is not a local folder; "
                               "remove it with the store's own tools")
    actions = [a for a in actions if not (a["kind"] == "file" and a["path"] is None)]
    return {"champion": champion.uri, "current_data_version": current, "actions": actions, "kept": kept,
            "not_removed": not_removed, "cleared_data_versions": sorted((held & due) - blocked)}


def carry_out(purge_id: int, plan: dict) -> ModelPurgeReport:
    """Make the plan's removals (each idempotent: what is gone already counts as removed). Recording the result
    and the receipts it earns is the caller's (ops/purge.py), under the same lock."""
    report = ModelPurgeReport(purge_id, plan["champion"], plan["current_data_version"], kept=list(plan["kept"]),
                              not_removed=list(plan["not_removed"]))
    client = MlflowClient()
    failed = False
    for action in plan["actions"]:
        try:
            remove(client, action)
        except (OSError, MlflowException) as exc:
            failed = True
            report.not_removed.append(f"{action['kind']} {action['target']}: {type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:200]}")
            continue
        report.removed.append(Removal(action["kind"], action["target"], action["why"], action.get("path")))
    # a failure leaves weights somewhere: no receipt until a later purge clears it
    report.cleared_data_versions = [] if failed else list(plan["cleared_data_versions"])
    return report


def remove(client: MlflowClient, action: dict) -> None:
    if action["kind"] == "file":
        path = Path(action["path"])
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    elif action["kind"] == "logged-model":
        try:
            client.delete_logged_model(action["target"])
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    else:
        name, version = action["target"].rsplit("/", 1)
        try:
            client.delete_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise


def data_versions_due(ledger: Ledger, current: str, params: Params, now: datetime) -> tuple[set[str], set[str]]:
    """(data versions whose weights may go now, every data version that held a record forgotten since).

    A done batch's parent data version held the batch's records. Its weights go once the champion that batch made
    has served `model_retention_batches` finished batches (it was their starting point) and
    `model_retention_hours` have passed since the batch finished."""
    retention = params.nightly.purge
    batches = ledger.batches()
    held, due = set(), set()
    for batch in batches:
        if batch.status != "done" or batch.parent_data_version == current:
            continue
        held.add(batch.parent_data_version)
        served = sum(1 for later in batches
                     if later.status == "done" and later.parent_model_version == batch.model_version)
        if (batch.finished_at and served >= retention.model_retention_batches
                and now - batch.finished_at >= timedelta(hours=retention.model_retention_hours)):
            due.add(batch.parent_data_version)
    return due, held


def retained_until(ledger: Ledger, version: str, params: Params) -> str:
    """When the weights of `version` may go, in words: the batches still to serve and the earliest hour."""
    retention = params.nightly.purge
    ends = [b.finished_at for b in ledger.batches() if b.status == "done" and b.parent_data_version == version]
    hour = (min(ends) + timedelta(hours=retention.model_retention_hours)).isoformat(timespec="seconds")
    return (f"the champion that excluded them has served {retention.model_retention_batches} batch(es) "
            f"(nightly.purge.model_retention_batches) and not before {hour}")


def weights_data_version(tags: dict[str, str]) -> str | None:
    """The data version a run's weights were trained or unlearned on. A nightly batch's run starts on its parent
    data version, but its model excludes the batch's records: that is `data_version_after`, set when it finishes
    (a batch still running has none, and is left alone)."""
    if tags.get("kind") == "deletion-batch":
        return tags.get("data_version_after")
    return tags.get("data_version")


def local_path(uri: str) -> Path | None:
    """The folder a file:// artifact URI names (or a plain path); None for any other store."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return Path(unquote(parts.path))
    return None


def file_action(run, name: str, why: str) -> dict:
    return location_action(run.info.artifact_uri, f"{run.info.run_id}/{name}", why, name)


def location_action(uri: str, target: str, why: str, name: str | None = None) -> dict:
    root = local_path(uri)
    path = None if root is None else str(root / name if name else root)
    return {"kind": "file", "target": target, "why": why, "path": path, "uri": display_uri(uri)}


def logged_models(client: MlflowClient, experiment_id: str) -> list:
    found, token = [], None
    while True:
        page = client.search_logged_models([experiment_id], page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def registry_versions(client: MlflowClient, name: str) -> list:
    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        return []
