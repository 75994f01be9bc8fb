"""`iau`: the operator's command line. `iau requests ...` queues and inspects deletion requests in the ledger;
`iau data ids` lists the ids a request may name, `iau train` makes the champion, `iau nightly` runs the deletion
batch, `iau purge` removes old data versions that still hold forgotten records and the model weights trained on them.

The project (params.yaml, data/, the embedded stores) is found as git and dvc find theirs: `--project PATH`, else
IAU_PROJECT_DIR, else the current directory or its nearest parent holding params.yaml and data.dvc
(stores/project.py). It is resolved only by the commands that need it.

Exit codes: 0 done, 1 the ledger or the data could not be read, 2 bad input (nothing was written).
The heavy imports (torch, to read the training ids) happen only in the command that needs them, so `--help`,
`list` and `show` answer at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from ledger import TIERS, EventView, Ledger, LedgerError, ModelPurgeView, RequestError, RequestView, ledger_url
from ledger.migrate import checked_url, masked
from reporting.text import escaped

BAD_INPUT = 2
UNAVAILABLE = 1

app = typer.Typer(name="iau", help="Machine unlearning in production: deletion requests, nightly batches.",
                  no_args_is_help=True, add_completion=False)
requests_app = typer.Typer(help="Deletion requests: queue them, list them, show one's history.",
                           no_args_is_help=True)
app.add_typer(requests_app, name="requests")
data_app = typer.Typer(help="The current data version: the ids of its roles.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@dataclass(frozen=True)
class Settings:
    ledger_url: str | None
    project: Path | None  # --project, if given

    @property
    def project_root(self) -> Path:
        """The project folder (stores/project.py); outside any project, one line naming what was looked for."""
        from stores.project import ProjectNotFound, project_root

        try:
            return project_root(self.project)
        except ProjectNotFound as exc:
            fail(str(exc), BAD_INPUT)

    def url(self) -> str:
        return self.ledger_url or ledger_url(self.project_root)


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


@contextmanager
def opened(ctx: typer.Context) -> Iterator[Ledger]:
    """The ledger, with its failures turned into one line on stderr and an exit code (never a traceback)."""
    url = ctx.obj.url()
    try:
        with Ledger(url) as ledger:
            yield ledger
    except RequestError as exc:
        fail(str(exc), BAD_INPUT)
    except LedgerError as exc:
        fail(str(exc), UNAVAILABLE)
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"the ledger at {masked(url)} cannot be used: {cause}", UNAVAILABLE)


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@requests_app.command("add")
def add(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(
        help="Sample ids of records in the current training data, D (`iau data ids` lists them; a negative "
             "number needs `--` before it).",
        show_default=False)] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="One id per line, or a CSV with a sample_id column. No BOM, no blank lines.")] = None,
    reason: Annotated[str, typer.Option(help="Why the records must be forgotten (kept in the audit).")] = ...,
    tier: Annotated[str, typer.Option(help=f"Risk tier: {' | '.join(TIERS)}. A high request makes its batch "
                                           "retrain instead of unlearning.")] = "normal",
) -> None:
    """Queue deletion requests for records of the training data D (`iau data ids` lists their ids). All or
    nothing: one bad id refuses the whole call and nothing is written. Asking again for a pending id at a higher
    tier raises its tier."""
    from cli.ids import IdFileError, parse_ids, read_ids_file, training_ids
    from iau_core.config import ParamsError, load_params

    try:
        limits = load_params(ctx.obj.project_root / "params.yaml").requests
    except (OSError, ParamsError) as exc:
        fail(f"cannot read {ctx.obj.project_root / 'params.yaml'}: {one_line(exc)}", UNAVAILABLE)
    try:
        wanted = parse_ids(ids or [], limits.max_ids_per_call)
        if file:
            wanted += read_ids_file(file, limits.max_file_bytes, limits.max_ids_per_call)
    except IdFileError as exc:
        fail(str(exc), BAD_INPUT)
    if not wanted:
        fail("no sample ids: give them as arguments or with --file", BAD_INPUT)
    if len(wanted) > limits.max_ids_per_call:
        fail(f"{len(wanted)} ids, more than the limit of {limits.max_ids_per_call} per call (params.yaml "
             "requests.max_ids_per_call); nothing was written", BAD_INPUT)
    try:
        known = training_ids(ctx.obj.project_root)
    except (OSError, ValueError) as exc:  # params.yaml invalid, data/ missing or corrupt
        fail(f"cannot read the current training data under {ctx.obj.project_root}: {exc}", UNAVAILABLE)
    with opened(ctx) as ledger:
        result = ledger.add_requests(wanted, reason, tier, known)
    if result.added:
        typer.echo(f"queued {len(result.added)} deletion request(s), tier {tier}: {joined(result.added)}")
    if result.raised:
        typer.echo(f"notice: already pending, tier raised to {tier}: {joined(result.raised)}")
    if result.already_pending:
        typer.echo(f"notice: already pending, left as they were: {joined(result.already_pending)}")


@requests_app.command("cancel")
def cancel(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(help="Sample ids of pending requests.", show_default=False)] = None,
    reason: Annotated[str, typer.Option(help="Why the requests are withdrawn (kept in the audit).")] = ...,
) -> None:
    """Withdraw pending deletion requests before a batch claims them. All or nothing: an id with no request, or
    one a batch has already claimed or finished, refuses the call and nothing is written. The request stays in the
    ledger as 'cancelled', with an event saying why; asking for the record again makes it pending once more."""
    from cli.ids import IdFileError, parse_ids

    try:
        wanted = parse_ids(ids or [])
    except IdFileError as exc:
        fail(str(exc), BAD_INPUT)
    if not wanted:
        fail("no sample ids: give the ids of pending requests as arguments", BAD_INPUT)
    with opened(ctx) as ledger:
        cancelled = ledger.cancel_requests(wanted, reason)
    typer.echo(f"cancelled {len(cancelled)} deletion request(s): {joined(cancelled)}")


@requests_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(
        help="Only requests in this state: pending | processing | done | escalated.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of objects instead of a table.")] = False,
) -> None:
    """List deletion requests, oldest first."""
    with opened(ctx) as ledger:
        views = ledger.list_requests(status)
    if as_json:
        typer.echo(json.dumps([v.as_json() for v in views], indent=2))
    elif not views:
        typer.echo("no deletion requests" + (f" with status {status}" if status else ""))
    else:
        typer.echo(table(views))


@requests_app.command("show")
def show(
    ctx: typer.Context,
    sample_id: Annotated[int, typer.Argument(help="The record's sample id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The request and its events as one JSON object.")] = False,
) -> None:
    """The whole history of one request: queued, claimed, the gate's numbers, escalation, done or released."""
    with opened(ctx) as ledger:
        request, events = ledger.history(sample_id)
        purge = ledger.model_purge(request.model_purge_id) if request.model_purge_id is not None else None
    if as_json:
        typer.echo(json.dumps({"request": request.as_json(), "events": [e.as_json() for e in events],
                               "model_purge": purge.as_json() if purge else None}, indent=2))
        return
    typer.echo(describe(request))
    typer.echo("history:")
    for event in events:
        typer.echo(f"  {stamp(event.at)}  {event.kind:<14} {scope(event):<9} {escaped(details(event.detail))}")
    for line in gate_verdicts(events):
        typer.echo(line)
    if request.status == "done":
        typer.echo(receipt(request, purge, kept_champion(request, events)))


@data_app.command("ids")
def data_ids(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="train (D: the records a deletion request may name) | val | test | "
                                           "shadow.")] = "train",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: role, data version, count, ids.")] = False,
) -> None:
    """List the sample ids of one role of the current data, one per line, ascending (what `iau requests add`
    accepts: the train role). The count and the data version go to stderr, so the output can be a --file."""
    from cli.ids import ROLES, role_ids

    if role not in ROLES:
        fail(f"unknown role {role!r}; known: {', '.join(ROLES)}", BAD_INPUT)
    root = ctx.obj.project_root
    try:
        ids = role_ids(root, role)
    except (OSError, ValueError) as exc:  # params.yaml invalid, data/ missing or corrupt
        fail(f"cannot read the current data under {root}: {one_line(exc)}", UNAVAILABLE)
    version = data_version(root)
    if as_json:
        typer.echo(json.dumps({"role": role, "data_version": version, "count": len(ids), "ids": ids}))
        return
    typer.echo("\n".join(map(str, ids)))
    typer.echo(f"{len(ids)} ids of role {role}, data version {version or 'unversioned (no data.dvc)'}", err=True)


def data_version(root: Path) -> str | None:
    """The md5 data.dvc records, or None where the data is not versioned yet."""
    from stores.data import recorded_version

    try:
        return recorded_version(root)[0]
    except (OSError, KeyError, TypeError, IndexError):
        return None


Overrides = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override one parameter of params.yaml for this run (repeatable).")]


@app.command("train")
def train_command(ctx: typer.Context, overrides: Overrides = None) -> None:
    """Train the deployed model with the GR recipe on the current data version, register it and make it the
    champion (models:/<tracking.deployed_model>@champion). A full retrain: the nightly drift counters restart."""
    from flows.train import train

    result = run_flow(ctx, lambda changes: train(overrides=changes, project_dir=str(ctx.obj.project_root)),
                      overrides)
    typer.echo(f"champion: {result['champion']} ({result['train_size']} records, data version "
               f"{result['data_version']})")


@app.command("nightly")
def nightly_command(ctx: typer.Context, overrides: Overrides = None) -> None:
    """Process every pending deletion request now, as the 02:00 deployment unlearn/nightly does: the ladder's
    methods from the champion, cheapest first, until one passes the gate (retrain last, or at once when
    escalated), promotion, the data's new version, the audit."""
    from flows.nightly import deletion_batch

    # the folder only: the data's version is checked under the batch's lock (another batch may be writing it)
    result = run_flow(ctx, lambda changes: deletion_batch(overrides=changes, project_dir=str(ctx.obj.project_root)),
                      overrides, check_version=False)
    if result["status"] == "no-op":
        typer.echo(f"no pending deletion requests: nothing to do ({result['champion']} stays champion)")
        return
    typer.echo(f"batch {result['batch_id']}: {result['requests']} request(s) forgotten by {result['method']}; "
               f"champion {result['model_version']}, data version {result['data_version']}; audit in MLflow run "
               f"{result['mlflow_run_id']} (audit/batch-{result['batch_id']}.md)")
    if result["status"] == "no-change":
        typer.echo(result["outcome"])
    # the new data version lives in these two files: a clone without them rebuilds the records it forgot
    typer.echo('next: git add data.dvc forgotten.csv && git commit -m "data: forget batch '
               f'{result["batch_id"]}"')


@app.command("purge")
def purge_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data: Annotated[bool, typer.Option("--data/--no-data", help="Old DVC data versions.")] = True,
    models: Annotated[bool, typer.Option("--models/--no-models", help="Model weights that saw forgotten "
                                         "records (after the retention window, nightly.purge).")] = True,
) -> None:
    """Remove what still holds forgotten records: older data versions from the DVC cache and the default remote,
    and the weights trained on them (registry versions, LoggedModels, run artifacts, superseded champions' cached
    gradients). Says exactly what was removed and what could not be. The current version and the live champion
    are never touched; a purge killed part-way is finished by the next."""
    from stores.purge import purge

    reports: dict[str, Any] = {}
    if data:
        try:
            reports["data"] = purge(ctx.obj.project_root)
        except Exception as exc:  # DVC or file-system errors: one line, no traceback
            fail(f"purge failed: {type(exc).__name__}: {exc}", UNAVAILABLE)
    if models:
        reports["models"] = purge_models_command(ctx)
    if as_json:
        typer.echo(json.dumps({kind: report.to_dict() for kind, report in reports.items()}, indent=2))
    else:
        typer.echo("\n".join(report.to_markdown() for report in reports.values()))


def purge_models_command(ctx: typer.Context):
    from iau_core.config import ParamsError, load_params
    from stores import tracking
    from stores.model_purge import purge_models
    from stores.registry import ChampionMissing

    root = ctx.obj.project_root
    try:
        params = load_params(root / "params.yaml")
        experiment_id = tracking.configure(root, params.tracking.experiment)
    except ParamsError as exc:
        fail(str(exc), BAD_INPUT)
    except Exception as exc:  # noqa: BLE001 - MLflow unreachable: the type, never the URL's secrets
        fail(f"model purge failed: MLflow tracking is unreachable ({type(exc).__name__})", UNAVAILABLE)
    with opened(ctx) as ledger:
        try:
            return purge_models(root, params, ledger, experiment_id)
        except ChampionMissing as exc:
            fail(f"model purge refused: {exc}", UNAVAILABLE)


@app.command("doctor")
def doctor_command(ctx: typer.Context) -> None:
    """Check that the ledger agrees with the model registry and the data, and repair what is safe: a running
    batch with no registered model version is released (its requests pending again). Says what to do otherwise;
    exit 1 when something needs a person."""
    from mlflow.exceptions import MlflowException

    from iau_core.config import ParamsError, load_params
    from stores import tracking
    from stores.data import recorded_version
    from stores.reconcile import reconcile

    root = ctx.obj.project_root
    try:
        params = load_params(root / "params.yaml")
    except ParamsError as exc:
        fail(one_line(exc), BAD_INPUT)
    try:
        tracking.configure(root, params.tracking.experiment)
    except Exception as exc:  # whatever the MLflow client raises when it cannot connect
        fail(f"MLflow tracking at {tracking.display_uri(tracking.tracking_uri(root))} is unreachable "
             f"({type(exc).__name__}): nothing was checked", UNAVAILABLE)
    with opened(ctx) as ledger, ledger.nightly_lock(owner="iau doctor"):  # never beside a running batch
        try:
            found = reconcile(ledger, params.tracking.deployed_model)
        except MlflowException as exc:
            fail(f"the model registry cannot be read: {one_line(exc)}", UNAVAILABLE)
        champion = ledger.current_champion()
        pending = len(ledger.list_requests("pending"))
    typer.echo(f"ledger {masked(ctx.obj.url())}: champion "
               f"{f'version {champion.model_version} (data version {champion.data_version})' if champion else 'none'}"
               f", {pending} pending request(s)")
    for batch_id in found.released:
        typer.echo(f"released batch {batch_id}: no model version was registered for it; its requests are pending "
                   "again")
    for batch_id in found.to_finish:
        typer.echo(f"batch {batch_id} has a registered model version: `iau nightly` finishes it")
    try:
        data_version = recorded_version(root)[0]
    except (OSError, KeyError, TypeError, ValueError) as exc:
        fail(f"the data version cannot be read: {one_line(exc)}", UNAVAILABLE)
    if champion is not None and not found.problem and champion.data_version != data_version:
        typer.echo(f"notice: data.dvc names data version {data_version}, the champion was made on "
                   f"{champion.data_version}; `iau train` retrains on the current data")
    if found.problem:
        fail(found.problem, UNAVAILABLE)
    typer.echo("ok: the ledger and the model registry agree")


def run_flow(ctx: typer.Context, start: Callable[[dict], dict], overrides: list[str] | None,
             check_version: bool = True) -> dict:
    """Validate --set first (exit 2, nothing started), run the flow, and turn its known failures into one line."""
    from dvc.exceptions import DvcException

    from cli.prefect_server import ServerUnavailable, owned_prefect_server
    from flows.nightly import GateFailed, TrackingUnavailable
    from iau_core.config import ParamsError, load_params, parse_overrides
    from stores.champion import ChampionUnusable
    from stores.data import DataVersionMismatch, checked_data
    from stores.reconcile import RegistryDiverged
    from stores.registry import ChampionMissing

    try:
        changes = parse_overrides(overrides or [])
        params = load_params(ctx.obj.project_root / "params.yaml", changes)
    except ParamsError as exc:
        fail(str(exc), BAD_INPUT)
    with opened(ctx):  # an unreachable or bad ledger: one line here, before Prefect starts and logs tracebacks
        pass
    try:  # data not built, not versioned or not the recorded version: one line naming the fix, before Prefect
        checked_data(ctx.obj.project_root, params.data, version=check_version)
    except (DataVersionMismatch, FileNotFoundError, DvcException) as exc:
        fail(one_line(exc), UNAVAILABLE)
    try:
        with ledger_for_flows(ctx.obj.ledger_url), owned_prefect_server():
            return start(changes)
    except (ChampionMissing, ChampionUnusable, TrackingUnavailable, GateFailed, DataVersionMismatch, LedgerError,
            FileNotFoundError, RegistryDiverged, ServerUnavailable) as exc:
        fail(str(exc), UNAVAILABLE)


@contextmanager
def ledger_for_flows(url: str | None) -> Iterator[None]:
    """--ledger-url for the flows this command runs: they open the ledger by IAU_LEDGER_URL (ledger.ledger_url).
    Restored afterwards, so nothing outlives the command in a long-lived process."""
    if url is None:
        yield
        return
    before = os.environ.get("IAU_LEDGER_URL")
    os.environ["IAU_LEDGER_URL"] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("IAU_LEDGER_URL", None)
        else:
            os.environ["IAU_LEDGER_URL"] = before


COLUMNS = ("sample_id", "status", "tier", "requested_at", "batch_id", "model_version", "data_version", "reason")


def table(views: list[RequestView]) -> str:
    cells = [[cell(getattr(v, column)) for column in COLUMNS] for v in views]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(COLUMNS)]
    lines = [COLUMNS, *cells]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def describe(request: RequestView) -> str:
    lines = [f"sample_id {request.sample_id}: {request.status} (tier {request.tier})",
             f"  reason:        {escaped(request.reason)}",
             f"  requested at:  {stamp(request.requested_at)}"]
    if request.batch_id is not None:
        lines.append(f"  batch:         {request.batch_id}")
    if request.escalation_reason:
        lines.append(f"  escalated:     {escaped(request.escalation_reason)}")
    if request.model_version:
        lines.append(f"  first excluded by model version {request.model_version}, data version {request.data_version}")
    return "\n".join(lines)


def kept_champion(request: RequestView, events: list[EventView]) -> bool:
    """Whether the record's batch finished on the champion unchanged (its step changed nothing)."""
    return any(e.kind == "done" and e.sample_id == request.sample_id and e.detail.get("unchanged") for e in events)


def receipt(request: RequestView, purge: ModelPurgeView | None, unchanged: bool = False) -> str:
    """Proof of forgetting: the model and data versions that first exclude the record, and the purge that removed
    the last weights trained on a data version that still held it."""
    lines = ["receipt:",
             f"  model version: {request.model_version} (the first that excludes the record; batch {request.batch_id})",
             f"  data version:  {request.data_version}"]
    if unchanged:
        lines.insert(2, f"  no change: the champion already showed no more membership of the record than the gate "
                        f"can detect, and the batch's step left it unchanged: version {request.model_version} "
                        "serves on, no new version was registered")
    if purge is None:
        lines.append("  earlier weights: not purged yet (`iau purge` removes them once "
                     "the retention window of nightly.purge has passed)")
    else:
        removed = (purge.report or {}).get("removed", [])
        versions = sorted(r["target"] for r in removed if r["kind"] == "registry-version")
        lines.append(f"  earlier weights: removed by model purge {purge.id} at {stamp(purge.finished_at)} "
                     f"({len(removed)} removals; registry versions {', '.join(versions) or 'none'})")
    return "\n".join(lines)


def scope(event: EventView) -> str:
    if event.sample_id is None:
        return f"batch {event.batch_id}"
    return f"batch {event.batch_id}" if event.batch_id is not None else ""


def gate_verdicts(events: list) -> list[str]:
    """One line per gated method of the record's batches (each rung of the ladder it tried, in order): the privacy
    verdict said plainly (an inconclusive gate saw nothing to remove; it did not show the record was forgotten),
    the validation-accuracy drop, the unlearning's seconds and whether the batch took it."""
    lines = []
    for event in events:
        if event.kind != "gate" or not isinstance(event.detail, dict):
            continue
        for method, result in event.detail.items():
            if not isinstance(result, dict) or "privacy_verdict" not in result:
                continue
            lines.append(f"privacy gate ({method}, {result.get('attack', 'lira')}): {result['privacy_verdict']}; "
                         f"champion AUC {auc(result['forget_auc_champion'])}, after "
                         f"{auc(result['forget_auc_candidate'])}, smallest detectable {auc(result['auc_threshold'])} "
                         f"for {result['members']} records; val acc drop {auc(result.get('val_acc_drop'))}"
                         + attempt_outcome(result))
    return lines


def attempt_outcome(result: dict[str, Any]) -> str:
    """'; 1.23 s; accepted' (a gate recorded before the ladder has neither)."""
    seconds = f"; {result['seconds']:.2f} s" if isinstance(result.get("seconds"), int | float) else ""
    taken = {True: "; accepted", False: "; rejected"}.get(result.get("accepted"), "")
    return seconds + taken


def auc(value: Any) -> str:
    """An AUC from the ledger's JSON, where a value that was not finite is stored as the text 'nan'."""
    return f"{value:.3f}" if isinstance(value, int | float) else str(value)


def details(detail: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value) if isinstance(value, dict | list) else value}"
                     for key, value in detail.items())


def cell(value: Any) -> str:
    """A table cell; text people typed (the reason) with its control characters escaped."""
    if value is None:
        return "-"
    return stamp(value) if hasattr(value, "isoformat") else escaped(str(value))


def stamp(at: Any) -> str:
    return at.isoformat(timespec="seconds")


MAX_ECHOED = 20  # ids echoed back after `add`; beyond that, a count


def joined(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:MAX_ECHOED])
    return shown if len(ids) <= MAX_ECHOED else f"{shown} and {len(ids) - MAX_ECHOED} more"


def one_line(exc: BaseException) -> str:
    """The error's message on one bounded line."""
    text = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


if __name__ == "__main__":
    app()
