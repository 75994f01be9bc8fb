"""`iau requests add|cancel|list|show`: intake (ops/intake.py) and the ledger's views, rendered by cli/render.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.context import opened
from cli.errors import BAD_INPUT, UNAVAILABLE, fail
from cli.render import (
    added_lines,
    describe,
    details,
    gate_verdicts,
    joined,
    kept_champion,
    receipt,
    scope,
    stamp,
    table,
)
from ledger import TIERS
from reporting.text import escaped

requests_app = typer.Typer(help="Deletion requests: queue them, list them, show one's history.",
                           no_args_is_help=True)


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
    from ops.intake import DataUnreadable, IntakeRefused, add_requests, checked_request, training_ids

    params = ctx.obj.params()
    try:
        request = checked_request(params.requests, ids or [], file, reason)
        known = training_ids(ctx.obj.project_root, params)
    except IntakeRefused as exc:
        fail(str(exc), BAD_INPUT)
    except DataUnreadable as exc:
        fail(str(exc), UNAVAILABLE)
    with opened(ctx) as ledger:
        added = add_requests(ledger, request, tier, known)
    for line in added_lines(added):
        typer.echo(line)


@requests_app.command("cancel")
def cancel(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(help="Sample ids of pending requests.", show_default=False)] = None,
    reason: Annotated[str, typer.Option(help="Why the requests are withdrawn (kept in the audit).")] = ...,
) -> None:
    """Withdraw pending deletion requests before a batch claims them. All or nothing: an id with no request, or
    one a batch has already claimed or finished, refuses the call and nothing is written. The request stays in the
    ledger as 'cancelled', with an event saying why; asking for the record again makes it pending once more."""
    from iau_core.config import RequestsParams
    from ops.intake import IntakeRefused, cancel_requests, checked_cancel

    try:  # the default limits: a cancel needs no project, only the ledger
        request = checked_cancel(RequestsParams(), ids or [], reason)
    except IntakeRefused as exc:
        fail(str(exc), BAD_INPUT)
    with opened(ctx) as ledger:
        cancelled = cancel_requests(ledger, request)
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
