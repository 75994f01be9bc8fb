"""Links into the MLflow UI (3.17) that open on what a reader needs, and the runs list's saved views.

What the UI reads (its bundle, mlflow/server/js/build; docs/tracking.md): the experiment page's first page follows
the workflow type, GenAI or model training, taken from the URL's `workflowType` parameter, else from the browser's
localStorage (`mlflow.workflowType_v1`, set by the sidebar's switch), GenAI by default; the experiment's tag
`mlflow.experimentKind` is not read for it. A saved view of the runs list is an experiment tag
`mlflow.sharedViewState.<id>` whose value holds the view's name and its state (search filter, order, columns); the
URL parameter `viewStateShareKey=<id>` opens it. Its state may also hold the chart view's settings: which runs
it shows (`runsHiddenMode`: the first 10 by default, `SHOW_ALL` here) and its charts (`compareRunCharts` in sections
`compareRunSections`); `compareRunsMode=CHART` in the URL opens the chart view.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import mlflow
from mlflow import MlflowClient

UI = "http://127.0.0.1:5000"  # what `make mlflow-ui` serves
MODEL_TRAINING = "workflowType=machine_learning"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_PARAM = "viewStateShareKey"
DURATION = "duration"  # the runs table's Duration column (always shown): kept first of the ordered columns
CHART_MODE = "compareRunsMode=CHART"
SHOW_ALL = "SHOW_ALL"  # the chart view's runs: every run of the view, not the UI's default first 10


def chart_state(sections: dict[str, list[dict]]) -> dict:
    """The chart view's cards (reporting.runs_list.scatter, bar) in named sections, as the UI stores them in a
    view's state (ids: any unique strings)."""
    charts, found = [], []
    for name, cards in sections.items():
        section = str(uuid.uuid4())
        found.append({"uuid": section, "name": name, "display": True, "isReordered": False, "deleted": False,
                      "isGenerated": False})
        charts += [{**card, "uuid": str(uuid.uuid4()), "metricSectionId": section, "deleted": False,
                    "isGenerated": False} for card in cards]
    return {"compareRunCharts": charts, "compareRunSections": found}


def runs_url(experiment_id: str, run_id: str | None = None, view: str | None = None, ui: str = UI,
             charts: bool = False) -> str:
    """The experiment's runs table (or one run's page) in model-training mode, optionally with a saved view and in
    the chart view. ui="" gives the link relative to the UI's page (a run description's markdown link)."""
    path = f"{ui}/#/experiments/{experiment_id}/runs" if ui else f"#/experiments/{experiment_id}/runs"
    path += f"/{run_id}" if run_id else ""
    return (f"{path}?{MODEL_TRAINING}" + (f"&{VIEW_PARAM}={view}" if view else "")
            + (f"&{CHART_MODE}" if charts else ""))


def save_runs_view(experiment_id: str, view_id: str, name: str, search_filter: str, columns: list[str],
                   order_by: str = "attributes.start_time", ascending: bool = True,
                   charts: dict[str, list[dict]] | None = None) -> None:
    """Create or replace the saved view `view_id` of the experiment's runs list (the runs table's "Views" menu):
    the runs matching `search_filter`, ordered by `order_by` (e.g. "metrics.`verdict_rank`"), showing `columns`
    (e.g. "tags.`verdict`", "metrics.`mu_gap`"); its chart view shows every run, with `charts` (section name ->
    cards: scatter, bar) first. The UI fills every other setting with its defaults."""
    now = int(time.time() * 1000)
    state = {"searchFilter": search_filter, "orderByKey": order_by, "orderByAsc": ascending,
             "selectedColumns": columns, "columnOrder": [DURATION, *columns], "runsHiddenMode": SHOW_ALL,
             **(chart_state(charts) if charts else {})}
    envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    MlflowClient().set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + view_id, json.dumps(envelope))


def save_children_view(parent_run_id: str, view_id: str, name: str, columns: list[str],
                       order_by: str = "attributes.start_time", ascending: bool = True,
                       charts: dict[str, list[dict]] | None = None) -> None:
    """save_runs_view of the parent's experiment: the runs nested under the parent, one row per method."""
    experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
    save_runs_view(experiment_id, view_id, name, f"tags.`mlflow.parentRunId` = '{parent_run_id}'", columns,
                   order_by, ascending, charts)


def view_links(parent_run_id: str, view_id: str) -> str:
    """Markdown for the parent's description: its saved view's chart view and columns, as links relative to the
    UI's page (so they work whatever address serves it), in model-training mode."""
    experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
    charts, columns = (runs_url(experiment_id, view=view_id, ui="", charts=c) for c in (True, False))
    return f"[Charts of every method]({charts}) · [verdict columns]({columns})"


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
            *(line for view in views for line in (
                f"view {view!r}: {runs_url(found.experiment_id, view=view, ui=ui)}",
                f"view {view!r}, charts: {runs_url(found.experiment_id, view=view, ui=ui, charts=True)}"))]


def main(argv: list[str] | None = None) -> None:
    """make mlflow-ui (and reporting.ui_check, which opens what this prints): the links, one a line."""
    import argparse

    from iau_core.config import load_params
    from stores.project import project_root

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--db", type=Path, default=None, help="default: the project's mlflow.db")
    parser.add_argument("--experiment", default=None, help="default: params.yaml's tracking.experiment")
    parser.add_argument("--ui", default=UI, help="the UI's address")
    args = parser.parse_args(argv)
    if args.db is None or args.experiment is None:  # the project make mlflow-ui runs in: found only when needed
        root = project_root()
        args.db = args.db or root / "mlflow.db"
        args.experiment = args.experiment or load_params(root / "params.yaml").tracking.experiment
    experiment = args.experiment
    print("\n".join(links(args.db, experiment, args.ui)))


if __name__ == "__main__":
    main()
