"""`iau`: the operator's command line, a thin adapter over ops/: `iau requests ...` queues and inspects deletion
requests in the ledger (ops/intake.py); `iau data ids` lists the ids a request may name, `iau train` makes the
champion, `iau nightly` runs the deletion batch, `iau purge` removes every copy that still holds a forgotten
record (ops/purge.py), `iau doctor` checks the ledger against the registry (ops/doctor.py). The `requests`
commands are cli/requests.py; what every command shares (settings, the opened ledger) cli/context.py; what they
print cli/render.py; how they refuse cli/errors.py (one line, exit 2 for bad input, 1 for a store that cannot be
used).

The project (params.yaml, data/, the embedded stores) is found as git and dvc find theirs: `--project PATH`, else
IAU_PROJECT_DIR, else the current directory or its nearest parent holding params.yaml and data.dvc
(stores/project.py). It is resolved only by the commands that need it, and its params.yaml is read and validated
once, before anything is opened.

The heavy imports (torch, to read the training ids) happen only in the command that needs them, so `--help`,
`list` and `show` answer at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from cli.context import Settings, opened
from cli.errors import BAD_INPUT, UNAVAILABLE, OneLineErrors, fail, one_line
from cli.flow_runs import run_flow
from cli.render import data_version_label, doctor_report
from cli.requests import requests_app
from ledger import LedgerError, RequestError
from ledger.migrate import checked_url, masked
from reporting.text import escaped

app = typer.Typer(name="iau", help="Machine unlearning in production: deletion requests, nightly batches.",
                  no_args_is_help=True, add_completion=False, cls=OneLineErrors)
app.add_typer(requests_app, name="requests")
data_app = typer.Typer(help="The current data version: the ids of its roles.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.callback()
def main(
    ctx: typer.Context,
    ledger_url_: Annotated[str | None, typer.Option(
        "--ledger-url", envvar="IAU_LEDGER_URL", show_default=False,
        help="Database of the ledger (sqlite:///path or postgresql://user@host/db). "
             "Default: ledger.db in the project root.")] = None,
    project: Annotated[Path | None, typer.Option(
        "--project", "--project-root", show_default=False,
        help="The project folder (params.yaml, data/, the embedded stores). Default: IAU_PROJECT_DIR, else the "
             "current directory or its nearest parent holding params.yaml and data.dvc.")] = None,
) -> None:
    """Machine unlearning in production: deletion requests, nightly batches."""
    if ledger_url_ is not None and not ctx.resilient_parsing:
        try:  # a bad URL is refused here, in one line, before any command opens (or creates) anything
            checked_url(ledger_url_)
        except RequestError as exc:
            fail(str(exc), BAD_INPUT)
    ctx.obj = Settings(ledger_url_, project)


@data_app.command("ids")
def data_ids(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="train (D: the records a deletion request may name) | val | test | "
                                           "shadow.")] = "train",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: role, data version, count, ids.")] = False,
    with_source: Annotated[bool, typer.Option("--with-source", help="Each id with where it comes from in the raw "
                                              "source: a table's row or an image's file.")] = False,
) -> None:
    """List the sample ids of one role of the current data, one per line, ascending (what `iau requests add`
    accepts: the train role). The count and the data version go to stderr, so the output can be a --file."""
    from ops.intake import ROLES, DataUnreadable, role_ids

    if role not in ROLES:
        fail(f"unknown role {role!r}; known: {', '.join(ROLES)}", BAD_INPUT)
    root, params = ctx.obj.project_root, ctx.obj.params()
    try:
        ids = role_ids(root, params, role)
    except DataUnreadable as exc:  # data/ missing or corrupt
        fail(str(exc), UNAVAILABLE)
    from stores.data import committed_to_git, version_or_none

    version = version_or_none(root)
    committed = committed_to_git(root) if version else None
    label = data_version_label(version, committed)
    sources = raw_sources(root, params, ids) if with_source else {}
    if as_json:
        shown = {"role": role, "data_version": version, "committed": committed, "count": len(ids), "ids": ids}
        if with_source:
            shown["sources"] = {str(i): sources.get(i) for i in ids}
        typer.echo(json.dumps(shown))
        return
    typer.echo("\n".join(f"{i}\t{escaped(sources.get(i, '(not in the raw source)'))}" if with_source else str(i)
                         for i in ids))
    typer.echo(f"{len(ids)} ids of role {role}, data version {label}", err=True)


def raw_sources(root: Path, params, ids: list[int]) -> dict[int, str]:
    from iau_core.datasets.raw_copies import raw_sources as sources

    try:
        return sources(params.data.dataset, root, ids)
    except (OSError, ValueError, KeyError) as exc:  # the raw source moved or changed since the data was built
        fail(f"cannot read the raw source of {params.data.dataset.name!r}: {one_line(exc)}", UNAVAILABLE)


Overrides = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override one parameter of params.yaml for this run (repeatable).")]


@app.command("train")
def train_command(ctx: typer.Context, overrides: Overrides = None) -> None:
    """Train the deployed model with the GR recipe on the current data version, register it and make it the
    champion (models:/<tracking.deployed_model>@champion). A full retrain: the nightly drift counters restart."""
    from flows.train import train_flow

    result = run_flow(ctx, lambda project: train_flow(project)(), overrides)  # the project opened here, in-process
    typer.echo(f"champion: {result['champion']} ({result['train_size']} records, data version "
               f"{result['data_version']})")


@app.command("nightly")
def nightly_command(ctx: typer.Context, overrides: Overrides = None) -> None:
    """Process every pending deletion request now, as the 02:00 deployment deletion-batch/nightly does: the
    ladder's methods from the champion, cheapest first, until one passes the gate (retrain last, or at once when
    escalated), promotion, the data's new version, the audit. Runs in this process: no Prefect server."""
    import logging

    from ops.project import Project

    root = ctx.obj.project_root
    params = ctx.obj.params(overrides)  # read and validated once, before anything starts: a mistake is exit 2
    # the lock first, before the heavy imports: a second nightly is refused at once, naming the holder
    with opened(ctx) as ledger, ledger.nightly_lock(owner=f"iau nightly (pid {os.getpid()})"):
        from iau_core.runtime import prepare_process

        prepare_process(params.threads)  # this process's share of the cores, before torch loads
        from dvc.exceptions import DvcException

        from ops.batch import GateFailed, PreconditionFailed, process_pending
        from ops.batch_steps import PlainSteps
        from ops.project import TrackingUnavailable
        from stores.champion import ChampionUnusable
        from stores.data import DataVersionMismatch, checked_data
        from stores.reconcile import RegistryDiverged
        from stores.registry import ChampionMissing

        progress = logging.getLogger("ops")  # the batch's progress on stderr, as the flow's log shows it
        if not progress.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
            progress.addHandler(handler)
            progress.setLevel(logging.INFO)
        try:  # the folder only: the data's version is checked by the batch (under this lock)
            checked_data(root, params.data, version=False)
            result = process_pending(Project(root, params, ledger), PlainSteps())
        except (ChampionMissing, ChampionUnusable, TrackingUnavailable, GateFailed, PreconditionFailed,
                DataVersionMismatch, FileNotFoundError, RegistryDiverged, DvcException) as exc:
            fail(one_line(exc), UNAVAILABLE)
    if result.status == "no-op":
        typer.echo(f"no pending deletion requests: nothing to do ({result.champion} stays champion)")
        return
    typer.echo(f"batch {result.batch_id}: {result.requests} request(s) forgotten by {result.method}; "
               f"champion {result.champion}, data version {result.data_version}; audit in MLflow run "
               f"{result.mlflow_run_id} (audit/batch-{result.batch_id}.md)")
    if result.status == "no-change":
        typer.echo(result.outcome)
    # the new data version lives in these two files: a clone without them rebuilds the records it forgot
    typer.echo(f'next: git add data.dvc forgotten.csv && git commit -m "data: forget batch {result.batch_id}"')


@app.command("purge")
def purge_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Also remove forgotten records from the raw source: a table "
                                      "is rewritten without their rows, an image folder loses their files.")] = False,
    data: Annotated[bool, typer.Option("--data/--no-data", help="Old DVC data versions.")] = True,
    models: Annotated[bool, typer.Option("--models/--no-models", help="Model weights that saw forgotten "
                                         "records (after the retention window, nightly.purge).")] = True,
) -> None:
    """Remove what still holds forgotten records: with --raw the raw source's rows or files; older data versions
    from the DVC cache and the default remote; and the weights trained on them (registry versions, LoggedModels,
    run artifacts, superseded champions' cached gradients). Says exactly what was removed and what could not be,
    and names every raw file that still holds a forgotten record. The current version and the live champion are
    never touched; a purge killed part-way is finished by the next. Holds the nightly lock."""
    from ops.purge import purge

    root, params = ctx.obj.project_root, ctx.obj.params()  # outside a project: one line, exit 2
    experiment_id = connected_tracking(root, params) if models else None
    with opened(ctx) as ledger:
        try:
            result = purge(root, params, ledger, raw=raw, data=data, models=models, experiment_id=experiment_id)
        except LedgerError:
            raise  # the lock is held: opened() says by whom, in one line
        except Exception as exc:  # noqa: BLE001 - DVC, MLflow or the file system: the type and first line only
            fail(f"purge failed: {type(exc).__name__}: {one_line(exc)}", UNAVAILABLE)
    reports = result.reports()
    if as_json:
        typer.echo(json.dumps({kind: report.to_dict() for kind, report in reports.items()}, indent=2))
    else:
        typer.echo("\n".join(report.to_markdown() for report in reports.values()))


def connected_tracking(root: Path, params) -> str:
    """The MLflow experiment's id; one line (never the URL's secrets) when tracking cannot be reached."""
    from stores import tracking

    try:
        return tracking.configure(root, params.tracking.experiment)
    except Exception as exc:  # noqa: BLE001 - whatever the MLflow client raises when it cannot connect
        fail(f"MLflow tracking at {tracking.display_uri(tracking.tracking_uri(root))} is unreachable "
             f"({type(exc).__name__}): nothing was removed", UNAVAILABLE)


@app.command("doctor")
def doctor_command(ctx: typer.Context) -> None:
    """Check that the ledger agrees with the model registry and the data, and repair what is safe: a running
    batch with no registered model version is released (its requests pending again). Says what to do otherwise;
    exit 1 when something needs a person."""
    from ops.doctor import RegistryUnreadable, TrackingUnreachable, diagnose

    root, params = ctx.obj.project_root, ctx.obj.params()
    with opened(ctx) as ledger:
        try:
            diagnosis = diagnose(root, params, ledger)
        except (TrackingUnreachable, RegistryUnreadable) as exc:
            fail(str(exc), UNAVAILABLE)
    for line in doctor_report(masked(ctx.obj.url()), diagnosis):
        typer.echo(escaped(line))
    if diagnosis.problem or diagnosis.data_problem:
        fail(diagnosis.problem or diagnosis.data_problem, UNAVAILABLE)
    typer.echo("ok: the ledger and the model registry agree")


if __name__ == "__main__":
    app()
