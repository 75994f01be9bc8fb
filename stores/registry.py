"""The deployed model's lineage in the MLflow model registry: versions, their tags, and the `champion` alias.

A version is created in one call with its tags (batch id, parent, data version), so a process killed between
two calls never leaves a version a rerun cannot recognise as its own. Registry stages are deprecated; the
deployed version is the one the alias names (`models:/<name>@champion`).

A nightly batch registers its version by its weights (`register_weights`: the state_dict the pipeline reloads
with weights_only, and a LoggedModel to hold the servable copy), and fills in the servable copy, MLflow's pt2
program with its signature (torch.export: seconds), after the requests are done (`export_servable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from stores.tracking import log_state_dict, logged_model_id, register_logged_model

if TYPE_CHECKING:
    import torch
    from torch import nn

CHAMPION = "champion"


class ChampionMissing(RuntimeError):
    """No version carries the champion alias: there is nothing to unlearn from yet."""


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _version(found) -> Version:
    return Version(found.name, str(found.version), found.run_id, dict(found.tags))


def register(name: str, run_id: str, tags: dict[str, str], description: str) -> Version:
    """A new version of `name` from the model logged on `run_id` (stores.tracking.log_model), with its tags and a
    description naming the method and the batch or run (the registry page shows it)."""
    number = register_logged_model(name, run_id, logged_model_id(run_id), tags, description)
    return _version(MlflowClient().get_model_version(name, number))


def register_weights(name: str, run_id: str, model: nn.Module, model_name: str, tags: dict[str, str],
                     description: str) -> Version:
    """A new version of `name` from `model`'s weights on `run_id`: the state_dict, and an empty LoggedModel (named
    `model_name`, e.g. the method) that `export_servable` fills later. Fast: no torch.export on the way."""
    log_state_dict(run_id, model.cpu().eval())
    client = MlflowClient()
    logged = client.create_logged_model(client.get_run(run_id).info.experiment_id, name=model_name,
                                        source_run_id=run_id)
    number = register_logged_model(name, run_id, logged.model_id, tags, description)
    return _version(client.get_model_version(name, number))


def export_servable(version: Version, model: nn.Module, input_example: torch.Tensor) -> bool:
    """The version's servable copy: MLflow's pt2 program (torch.export traces it on a real input; a batch of more
    than one keeps the batch dimension dynamic) with its signature, into the version's LoggedModel. Idempotent:
    False when the copy is there already (a version logged whole by stores.tracking.log_model, or exported)."""
    client = MlflowClient()
    found = client.get_model_version(version.name, version.version)
    model_id = found.source.removeprefix("models:/") if found.source.startswith("models:/") else None
    if model_id is None:
        return False
    logged = client.get_logged_model(model_id)
    if logged.status == LoggedModelStatus.READY:
        return False
    import mlflow.pytorch
    import torch

    mlflow.pytorch.log_model(model.cpu().eval(), name=logged.name, model_id=model_id, run_id=version.run_id,
                             serialization_format="pt2", input_example=input_example.detach().cpu().numpy(),
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    return True


def servable(version: Version) -> bool:
    """Whether the version's LoggedModel holds its servable copy (a batch killed before exporting it: not yet)."""
    client = MlflowClient()
    source = client.get_model_version(version.name, version.version).source
    if not source.startswith("models:/"):
        return True  # registered from a run's artifacts: nothing of ours to export
    return client.get_logged_model(source.removeprefix("models:/")).status == LoggedModelStatus.READY


def find(name: str, tag: str, value: str) -> Version | None:
    """The version of `name` tagged tag=value (a batch's own version, when a rerun resumes it)."""
    try:
        found = MlflowClient().search_model_versions(f"name = '{name}' and tags.{tag} = '{value}'")
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    if len(found) > 1:
        raise RuntimeError(f"{len(found)} versions of {name} are tagged {tag}={value}; expected at most one")
    return _version(found[0]) if found else None


def champion(name: str) -> Version:
    try:
        return _version(MlflowClient().get_model_version_by_alias(name, CHAMPION))
    except MlflowException as exc:
        raise ChampionMissing(
            f"no champion: registered model {name!r} has no version with the alias {CHAMPION!r} ({exc.message}). "
            "Train one first: `iau train`.") from None


def version(name: str, number: str) -> Version:
    """Version `number` of `name` as the registry holds it now (its tags read afresh)."""
    return _version(MlflowClient().get_model_version(name, str(number)))


def promote(version: Version) -> None:
    """Move the champion alias to `version` (idempotent)."""
    MlflowClient().set_registered_model_alias(version.name, CHAMPION, version.version)


def tag(version: Version, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, str(value))
