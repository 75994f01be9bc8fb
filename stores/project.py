"""What every task of one flow run shares (the project folder, the run's context), and the data loaded once per
process."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch

from iau_core.config import DataParams, Params, Recipe
from iau_core.data import DataBundle, load_bundle
from iau_core.recipe import recipe_params
from iau_core.training import resolve_device

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_root(override: str | Path | None = None) -> Path:
    """The folder holding params.yaml, data.dvc, data/ and the embedded stores: `override`, else the environment's
    IAU_PROJECT_DIR, else this checkout. The code never moves; a deployment can point it at another project."""
    return Path(override or os.environ.get("IAU_PROJECT_DIR") or PROJECT_ROOT).resolve()


@dataclass(frozen=True)
class RunContext:
    params: Params  # one repeat's params inside the per-seed loop (see for_seed)
    data_version: str  # md5 of data/ as recorded in data.dvc
    experiment_id: str
    repo_root: Path = PROJECT_ROOT

    @property
    def device(self) -> torch.device:
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
        return replace(self, params=recipe_params(self.params, recipe))


@lru_cache(maxsize=2)
def _bundle(root: Path, data: DataParams, data_version: str) -> DataBundle:
    """Tasks of one run share the decoded tensors; data_version is in the key so new data is never stale."""
    return load_bundle(data, root)
