"""The project an operation works on, built once at the edge (a CLI command, a flow) and passed down: its folder,
its params (read and validated once), its ledger, and, once connected, its MLflow experiment and data version.

Nothing below the edge finds the project again (no environment variables handed over, no install folder): the
caller resolves the folder (stores/project.py: --project, IAU_PROJECT_DIR, the working directory) and opens the
ledger with the URL it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from iau_core.config import Params, load_params
from ledger import Ledger, default_ledger_url

if TYPE_CHECKING:
    from stores.project import RunContext


class TrackingUnavailable(RuntimeError):
    """MLflow cannot be reached: nothing was claimed."""


@dataclass(frozen=True)
class Project:
    root: Path
    params: Params
    ledger: Ledger
    experiment_id: str | None = None  # the MLflow experiment (params.tracking.experiment), set by `connected`
    data_version: str | None = None  # the md5 data.dvc names, set by `connected`

    def run_context(self) -> RunContext:
        """What the stores' and tasks' functions take: params, data version, experiment, folder."""
        from stores.project import RunContext

        if self.experiment_id is None or self.data_version is None:
            raise RuntimeError("the project is not connected to its tracking store yet (ops.project.connected)")
        return RunContext(self.params, self.data_version, self.experiment_id, self.root)


def open_project(root: Path, overrides: dict | None = None, ledger_url: str | None = None,
                 params_file: str = "params.yaml") -> Project:
    """The project at `root`: params validated once (with --set overrides), the ledger opened (given URL, else
    ledger.db in the folder). Light: no torch, MLflow or DVC yet, so a lock can be checked before anything slow."""
    params = load_params(root / params_file, overrides)
    return Project(root, params, Ledger(ledger_url or default_ledger_url(root)))


def connected(project: Project) -> Project:
    """The project with its MLflow experiment and recorded data version (imports MLflow and DVC: seconds); a clear
    TrackingUnavailable when MLflow cannot be reached."""
    from stores import tracking
    from stores.data import recorded_version

    try:
        experiment_id = tracking.configure(project.root, project.params.tracking.experiment)
    except Exception as exc:  # connection refused, DNS, HTTP errors: whatever the client raises
        uri = tracking.display_uri(tracking.tracking_uri(project.root))
        raise TrackingUnavailable(f"MLflow tracking at {uri} is unreachable ({type(exc).__name__}); no request was "
                                  "claimed") from None
    return replace(project, experiment_id=experiment_id, data_version=recorded_version(project.root)[0])
