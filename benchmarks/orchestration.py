"""Figures that time whole commands: `iau nightly` through a deployment on a running worker
(orchestration_overhead), and `make run SEEDS="0 1"` under execution local and dask (full run only)."""

from __future__ import annotations

import os
import subprocess
import time

from benchmarks.figures import Figure, unavailable
from iau_core.config import Params
from stores.project import PROJECT_ROOT

EXECUTION_ENV = "IAU_EXECUTION"


def orchestration_overhead() -> Figure:
    # Needs a Prefect server, a process worker, a deployed project with a champion and 100 queued requests
    # (tests/test_deployments.py sets these up); the timed run and the science time from its MLflow record.
    return unavailable("orchestration_overhead", "not built yet: the deployment run on a warm worker is not timed "
                       "by the benchmark (benchmarks/nightly_latency.py times the science part alone)",
                       cold_cli="not available")


def make_run_walls(params: Params, enabled: bool) -> dict:
    """Wall seconds of `make run SEEDS="0 1"` with IAU_EXECUTION=local, then dask; one run each (minutes)."""
    if not enabled:
        return {"status": "full run only"}
    if "execution" not in Params.model_fields:
        return {"status": "not available: params.yaml has no `execution: local|dask` yet"}
    walls = {}
    for execution in ("local", "dask"):
        start = time.perf_counter()
        done = subprocess.run(["make", "run", "SEEDS=0 1"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              env={**os.environ, EXECUTION_ENV: execution}, check=False)
        walls[execution] = {"seconds": time.perf_counter() - start, "exit": done.returncode}
    return {"status": "measured", **walls, "dask_over_local": walls["dask"]["seconds"] / walls["local"]["seconds"]}
