"""Where the unlearn flow's independent tasks run (`execution` in params.yaml, docs/scale-out.md).

- `local`: in the flow's process, one after another, in the recipe loop's order (what `make run` does).
- `dask`: the (method, seed) pairs and the attacker's reference models are submitted to prefect-dask's
  DaskTaskRunner. By default that is a distributed.LocalCluster started for the flow run, one single-threaded
  worker process per core, each taking one torch thread; `dask.address` (or IAU_DASK_ADDRESS) uses the scheduler
  of an existing cluster instead.

The environment overrides params.yaml: IAU_EXECUTION=local|dask, IAU_DASK_ADDRESS=tcp://host:8786.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, get_args
from urllib.parse import urlsplit

from iau_core.config import Params, ParamsError
from iau_core.runtime import THREADS_ENV, usable_cores
from stores import tracking

if TYPE_CHECKING:  # imported when used: `execution: local` never loads dask and distributed
    from prefect_dask import DaskTaskRunner

EXECUTION_ENV = "IAU_EXECUTION"
ADDRESS_ENV = "IAU_DASK_ADDRESS"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
EXECUTIONS = get_args(Params.model_fields["execution"].annotation)


def environment_overrides() -> dict:
    """params overrides from IAU_EXECUTION and IAU_DASK_ADDRESS, so the run's MLflow params record how it ran."""
    changes: dict = {}
    if execution := os.environ.get(EXECUTION_ENV):
        if execution not in EXECUTIONS:
            raise ParamsError(f"{EXECUTION_ENV} must be one of {list(EXECUTIONS)}, got {execution!r}")
        changes["execution"] = execution
    if address := os.environ.get(ADDRESS_ENV):
        changes["dask"] = {"address": address}
    return changes


def dask_runner(params: Params, root: Path) -> DaskTaskRunner:
    """The task runner of `execution: dask`: an existing scheduler, else a LocalCluster on loopback."""
    from prefect_dask import DaskTaskRunner

    if params.dask.address:
        on_this_machine = urlsplit(params.dask.address).hostname in LOOPBACK
        if tracking.tracking_uri(root).startswith("sqlite:") and not on_this_machine:
            # Workers on other machines cannot write into this machine's SQLite file: they would each make their own.
            raise ParamsError(f"dask.address {params.dask.address!r} needs MLFLOW_TRACKING_URI set to an MLflow "
                              "server every worker reaches (docs/scale-out.md); the store here is a local SQLite file")
        return DaskTaskRunner(address=params.dask.address)
    workers = usable_cores() if params.dask.workers == "auto" else params.dask.workers
    # One process per worker with one thread: torch in each takes one core (IAU_THREADS=1), so N workers never
    # start N x cores compute threads. Loopback only, no dashboard (it would listen on every interface).
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
        "dashboard_address": None, "env": {THREADS_ENV: "1"}})


@contextmanager
def task_runner(params: Params, root: Path) -> Iterator[DaskTaskRunner | None]:
    """The started Dask task runner under `execution: dask` (stopped, with a LocalCluster it started, when the
    block ends); None under `local`: call the tasks directly."""
    if params.execution == "local":
        yield None
        return
    with dask_runner(params, root) as runner:
        yield runner
