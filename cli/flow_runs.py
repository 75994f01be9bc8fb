"""`iau train` and `iau nightly` start a flow: params, ledger and data are checked first, each mistake in one line
naming its fix (cli/errors.py), and only then does Prefect start; the flow's known failures end in one line too."""

from __future__ import annotations

from collections.abc import Callable

import typer

from cli.errors import UNAVAILABLE, fail, one_line
from ledger import LedgerError


def run_flow(ctx: typer.Context, start: Callable[[dict], dict], overrides: list[str] | None,
             check_version: bool = True) -> dict:
    """Validate --set first (exit 2, nothing started), run the flow, and turn its known failures into one line."""
    from dvc.exceptions import DvcException

    from cli.prefect_server import ServerUnavailable, owned_prefect_server
    from flows.nightly import GateFailed, TrackingUnavailable
    from iau_core.config import parse_overrides
    from stores.champion import ChampionUnusable
    from stores.data import DataVersionMismatch, checked_data
    from stores.reconcile import RegistryDiverged
    from stores.registry import ChampionMissing

    params = ctx.obj.params(overrides)  # every way params.yaml or a --set is wrong: one line, exit 2
    changes = parse_overrides(overrides or [])  # valid: checked just above
    from cli.context import opened
    from cli.main import ledger_for_flows

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
