"""Links into the MLflow UI (3.17) that open on what a reader needs, and the runs list's saved views.

What the UI reads (its bundle, mlflow/server/js/build; docs/tracking.md): the experiment page's first page follows
the workflow type, GenAI or model training, taken from the URL's `workflowType` parameter, else from the browser's
localStorage (`mlflow.workflowType_v1`, set by the sidebar's switch), GenAI by default; the experiment's tag
`mlflow.experimentKind` is not read for it. A saved view of the runs list is an experiment tag
`mlflow.sharedViewState.<id>` whose value holds the view's name and its state (search filter, order, columns); the
URL parameter `viewStateShareKey=<id>` opens it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

UI = "http://127.0.0.1:5000"  # what `make mlflow-ui` serves
MODEL_TRAINING = "workflowType=machine_learning"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_PARAM = "viewStateShareKey"
DURATION = "duration"  # the runs table's Duration column (always shown): kept first of the ordered columns


def runs_url(experiment_id: str, run_id: str | None = None, view: str | None = None, ui: str = UI) -> str:
    """The experiment's runs table (or one run's page) in model-training mode, optionally with a saved view."""
    path = f"{ui}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{path}?{MODEL_TRAINING}" + (f"&{VIEW_PARAM}={view}" if view else "")


def save_runs_view(experiment_id: str, view_id: str, name: str, search_filter: str, columns: list[str],
                   order_by: str = "attributes.start_time", ascending: bool = True) -> None:
    """Create or replace the saved view `view_id` of the experiment's runs list (the runs table's "Views" menu):
    the runs matching `search_filter`, ordered by `order_by` (e.g. "metrics.`verdict_rank`"), showing `columns`
    (e.g. "tags.`verdict`", "metrics.`mu_gap`"). The UI fills every other setting with its defaults."""
    now = int(time.time() * 1000)
    state = {"searchFilter": search_filter, "orderByKey": order_by, "orderByAsc": ascending,
             "selectedColumns": columns, "columnOrder": [DURATION, *columns]}
    envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    MlflowClient().set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + view_id, json.dumps(envelope))


def save_children_view(parent_run_id: str, view_id: str, name: str, columns: list[str],
                       order_by: str = "attributes.start_time", ascending: bool = True) -> None:
    """save_runs_view of the parent's experiment: the runs nested under the parent, one row per method."""
    experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
    save_runs_view(experiment_id, view_id, name, f"tags.`mlflow.parentRunId` = '{parent_run_id}'", columns,
                   order_by, ascending)


def links(db: Path, experiment: str, ui: str = UI) -> list[str]:
    """What `make mlflow-ui` prints: the experiment's runs table and each of its saved views, in model-training mode
    (the experiments list's own links carry no workflow type: GenAI opens unless this browser chose model training)."""
    if not db.exists():
        return [f"{ui}/#/experiments?{MODEL_TRAINING}  (no runs yet: make run first)"]
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return [f"{ui}/#/experiments?{MODEL_TRAINING}  (no experiment {experiment!r} yet: make run first)"]
    views = sorted(key.removeprefix(VIEW_TAG_PREFIX) for key in found.tags if key.startswith(VIEW_TAG_PREFIX))
    return [f"runs of {experiment!r}: {runs_url(found.experiment_id, ui=ui)}",
            *(f"view {view!r}: {runs_url(found.experiment_id, view=view, ui=ui)}" for view in views)]


if __name__ == "__main__":  # make mlflow-ui
    from iau_core.config import load_params
    from stores.tracking import REPO_ROOT

    print("\n".join(links(REPO_ROOT / "mlflow.db", load_params(REPO_ROOT / "params.yaml").tracking.experiment)))
