"""Which project a process works on, what every task of one flow run shares (the project folder, the run's
context), and the data loaded once per process.

A project is a folder holding params.yaml and data.dvc (and, beside them, data/ and the embedded stores). It is
found as git and dvc find theirs: an explicit folder (`iau --project PATH`, a flow's `project_dir`), else the
environment's IAU_PROJECT_DIR, else the current directory or its nearest parent holding both files. So `iau`, a
flow started by hand and a flow run by a Prefect worker (whose working directory prefect.yaml sets) agree, and an
installed package never takes its own site-packages for the project.

Light to import (no torch at module level): `iau --help` and `iau requests list` resolve the project too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from iau_core.config import DataParams, Params, Recipe

if TYPE_CHECKING:
    import torch

    from iau_core.data import DataBundle

PROJECT_ENV = "IAU_PROJECT_DIR"
MARKERS = ("params.yaml", "data.dvc")  # what makes a folder a project when searching upwards


class ProjectNotFound(RuntimeError):
    """No project where one was looked for; the message names what was looked for and where."""


def project_root(override: str | Path | None = None) -> Path:
    """The project folder: `override`, else IAU_PROJECT_DIR, else the current directory or its nearest parent
    holding params.yaml and data.dvc. An explicit folder must exist and hold params.yaml (data.dvc may still be
    missing: the data is materialized and `dvc add`ed there first)."""
    if override:
        return explicit(Path(override), "the project folder")
    if named := os.environ.get(PROJECT_ENV):
        return explicit(Path(named), PROJECT_ENV)
    return find_project(Path.cwd())


def explicit(folder: Path, source: str) -> Path:
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise ProjectNotFound(f"{source} {folder} is not a folder")
    if not (folder / "params.yaml").is_file():
        raise ProjectNotFound(f"{source} {folder} holds no params.yaml")
    return folder


def find_project(start: Path) -> Path:
    """The nearest folder from `start` upwards holding every file of MARKERS."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if all((folder / name).is_file() for name in MARKERS):
            return folder
    raise ProjectNotFound(f"no iau project here: neither {start} nor a parent holds both {' and '.join(MARKERS)}; "
                          f"run from a project folder, or give one with --project PATH or {PROJECT_ENV}")


@dataclass(frozen=True)
class RunContext:
    params: Params  # one repeat's params inside the per-seed loop (see for_seed)
    data_version: str  # md5 of data/ as recorded in data.dvc
    experiment_id: str
    # the project folder: the entry points pass theirs; a study or test left without one uses project_root()
    repo_root: Path = field(default_factory=project_root)

    @property
    def device(self) -> torch.device:
        from iau_core.training import resolve_device

        return resolve_device(self.params.device)

    def bundle(self) -> DataBundle:
        return _bundle(self.repo_root / self.params.data.root, self.params.data, self.data_version)

    def for_seed(self, seed: int) -> RunContext:
        return replace(self, params=self.params.for_seed(seed))

    def without_gr(self) -> RunContext:
        """The same recipe with alpha = 0: the model GR is measured against (the gradient-norm plot)."""
        return self.for_recipe("no_gr")

    def for_recipe(self, recipe: Recipe) -> RunContext:
        """The context whose params train `recipe`'s base model (a method's declared starting point)."""
        from iau_core.recipe import recipe_params

        return replace(self, params=recipe_params(self.params, recipe))


@lru_cache(maxsize=2)
def _bundle(root: Path, data: DataParams, data_version: str) -> DataBundle:
    """Tasks of one run share the decoded tensors; data_version is in the key so new data is never stale."""
    from iau_core.data import load_bundle

    return load_bundle(data, root)
