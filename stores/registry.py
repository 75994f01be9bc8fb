"""The deployed model's lineage in the MLflow model registry: versions, their tags, and the `champion` alias.

A version is created in one call with its tags (batch id, parent, data version), so a process killed between
two calls never leaves a version a rerun cannot recognise as its own. Registry stages are deprecated; the
deployed version is the one the alias names (`models:/<name>@champion`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from stores.tracking import logged_model_id, register_logged_model

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


def promote(version: Version) -> None:
    """Move the champion alias to `version` (idempotent)."""
    MlflowClient().set_registered_model_alias(version.name, CHAMPION, version.version)


def tag(version: Version, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, str(value))
