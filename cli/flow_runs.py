"""`iau train` runs a Prefect flow: params, ledger and data are checked first, each mistake in one line naming its
fix (cli/errors.py), and only then does Prefect start; the flow's known failures end in one line too.

The flow gets the project this command opened (ops.project.Project: the folder, params read and validated once,
the ledger of --ledger-url), in this process: nothing is handed over through the environment, and nothing secret
becomes a flow parameter."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from cli.errors import UNAVAILABLE, fail, one_line
from ledger import LedgerError

if TYPE_CHECKING:  # imported when a flow starts, so `iau --help` stays light
    from ops.project import Project


def run_flow(ctx: typer.Context, start: Callable[[Project], dict], overrides: list[str] | None,
             check_version: bool = True) -> dict:
    """Validate params and --set first (exit 2, nothing started), open the ledger and check the data, run the flow
    over that project, and turn its known failures into one line."""
    from dvc.exceptions import DvcException

    from cli.context import opened
    from cli.prefect_server import ServerUnavailable, owned_prefect_server
    from flows.nightly import GateFailed, TrackingUnavailable
    from ops.project import Project
    from stores.champion import ChampionUnusable
    from stores.data import DataVersionMismatch, checked_data
    from stores.reconcile import RegistryDiverged
    from stores.registry import ChampionMissing

    root = ctx.obj.project_root
    params = ctx.obj.params(overrides)  # the command's one read: every way params.yaml or a --set is wrong, exit 2
    # an unreachable or bad ledger: one line here, before Prefect starts and logs tracebacks
    with opened(ctx) as ledger:
        try:  # data not built, not versioned or not the recorded version: one line naming the fix, before Prefect
            checked_data(root, params.data, version=check_version)
        except (DataVersionMismatch, FileNotFoundError, DvcException) as exc:
            fail(one_line(exc), UNAVAILABLE)
        try:
            with owned_prefect_server():
                return start(Project(root, params, ledger))
        except (ChampionMissing, ChampionUnusable, TrackingUnavailable, GateFailed, DataVersionMismatch, LedgerError,
                FileNotFoundError, RegistryDiverged, ServerUnavailable) as exc:
            fail(str(exc), UNAVAILABLE)
