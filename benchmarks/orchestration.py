"""Figures that time whole commands: `iau nightly` through a deployment on a running worker
(orchestration_overhead), and `make run SEEDS="0 1"` under execution local and dask (full run only).

orchestration_overhead = (wall - science) / wall, the median over repetitions, where
- wall: the deployment run deletion-batch/nightly from its flow run's creation to its end (the Prefect server's
  timestamps: scheduling, the worker's pickup, the flow run's process start and imports, the stores' I/O),
- science: the batch's `unlearn-*` and `gate-*` steps as the flow times them into the ledger (BatchView.steps):
  the unlearning itself and the gate's evaluation and attacks. Loading the champion, registering, forgetting the
  records in DVC, promotion, the audit and caching D's summed gradient count as orchestration.
Set-up, done once and not timed: a temporary project on the digits dataset (small, so the whole figure stays within
a few minutes on 2 cores), a Prefect server and a process worker on loopback, `prefect deploy --all`, a champion
(`iau train`). Each repetition queues a new batch of requests on the champion the previous batch promoted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import PROJECT_ROOT
from benchmarks.figures import Figure, unavailable
from iau_core.config import Params

EXECUTION_ENV = "IAU_EXECUTION"
POOL = "iau-local"  # prefect.yaml's work pool
WORKER_POLL_SECONDS = 1  # the worker's query interval (Prefect's default 10 s would dominate a manual run; a
# scheduled 02:00 run is fetched ahead of its start time, so it never waits for a poll)
DATASET = "digits"
# digits at these sizes, drift limits off: every repetition must take the IAU path (a retrain is a different figure)
PROJECT = {
    "device": "cpu",
    "data": {"dataset": DATASET, "train_size": 900, "val_size": 200, "test_size": 200, "shadow_pool_size": 497},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 5, "patience": 3},
    "mia": {"num_shadow": 2, "epochs": 10},
    "lira": {"num_reference": 2},
    "tracking": {"experiment": "bench-orchestration", "registered_model": "bench-base",
                 "deployed_model": "bench-deployed"},
    "nightly": {"drift": {"max_iau_batches": 1000, "max_forgotten_share": 1.0}},
}
BUDGET_SECONDS = 240.0  # make bench's quick mode has 15 min on 2 cores for every figure
RUN_DEPLOYMENT = """
import json
from prefect.deployments import run_deployment
run = run_deployment("deletion-batch/nightly", timeout=None, poll_interval=1)
print(json.dumps({"id": str(run.id), "state": run.state.type.value, "created": run.created.timestamp(),
                  "start": run.start_time.timestamp(), "end": run.end_time.timestamp()}))
"""


def orchestration_overhead(requests: int = 100, reps: int = 3, enabled: bool = True,
                           budget_seconds: float = BUDGET_SECONDS) -> Figure:
    """The figure (module docstring); its detail holds every repetition, the cold CLI and the set-up. At most
    `reps` repetitions, fewer once another would end past `budget_seconds` (set-up included); at least one."""
    if not enabled:
        return unavailable("orchestration_overhead", "skipped in --tiny (starts a Prefect server and a worker)",
                           cold_cli="not available")
    try:
        return _measure(requests, reps, budget_seconds)
    except (subprocess.SubprocessError, RuntimeError, TimeoutError, OSError) as exc:
        return unavailable("orchestration_overhead", f"{type(exc).__name__}: {str(exc)[-600:]}",
                           cold_cli="not available")


def _measure(requests: int, reps: int, budget_seconds: float) -> Figure:
    from ledger import Ledger, ledger_url
    from sandbox.projects import BIN, make_project
    from sandbox.servers import prefect_server, prefect_worker

    with tempfile.TemporaryDirectory(prefix="iau-bench-orch-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        project = make_project(tmp / "project", PROJECT)
        stores = {"IAU_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
                  "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_POLL_SECONDS)}
        with prefect_server(tmp) as server:
            env = {**server, **stores}
            _call(env, str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process")
            _call({**env, "IAU_CODE_DIR": str(PROJECT_ROOT), "IAU_NIGHTLY_TIMEZONE": "UTC"}, str(BIN / "prefect"),
                  "--no-prompt", "deploy", "--all")
            _call(env, str(BIN / "iau"), "train")
            ledger = Ledger(ledger_url(project))
            ids = iter(sorted(int(i) for i in _call(env, str(BIN / "iau"), "data", "ids").split()))
            with prefect_worker(POOL, env, tmp / "worker.log", PROJECT_ROOT):
                setup = time.perf_counter() - start
                runs = []
                for _ in range(reps):
                    if runs and time.perf_counter() - start + runs[-1]["wall_seconds"] > budget_seconds:
                        break
                    _queue(env, BIN, ids, requests)
                    timed = json.loads(_call(env, str(BIN / "python"), "-c", RUN_DEPLOYMENT).strip().splitlines()[-1])
                    if timed["state"] != "COMPLETED":
                        raise RuntimeError(f"deployment run {timed['id']} ended {timed['state']}; "
                                           f"worker log: {(tmp / 'worker.log').read_text()[-1500:]}")
                    runs.append(_split(timed["end"] - timed["created"], ledger.batches()[-1],
                                       pickup_seconds=timed["start"] - timed["created"]))
            _queue(env, BIN, ids, requests)  # the cold CLI: a fresh process, the server still up
            begun = time.perf_counter()
            _call(env, str(BIN / "iau"), "nightly")
            cold = _split(time.perf_counter() - begun, ledger.batches()[-1])
    value = statistics.median(r["overhead"] for r in runs)
    return Figure("orchestration_overhead", value, {
        "science": "the batch's unlearn-* and gate-* steps (ledger step table): unlearning + the gate's evaluation "
                   "and attacks; everything else in the wall is orchestration",
        "wall": "deployment run deletion-batch/nightly on a warm process worker, flow run created -> ended "
                "(Prefect server timestamps)",
        "dataset": DATASET, "train_size": PROJECT["data"]["train_size"], "requests": requests, "reps": len(runs),
        "worker_poll_seconds": WORKER_POLL_SECONDS, "setup_seconds": setup,
        "wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
        "science_seconds": statistics.median(r["science_seconds"] for r in runs),
        "runs": runs, "cold_cli": f"{cold['wall_seconds']:.1f} s wall, {cold['science_seconds']:.2f} s science, "
                                  f"overhead {cold['overhead']:.3f}", "cold_cli_run": cold})


def _split(wall: float, batch, **extra) -> dict:
    """One timed batch: wall, science (the ledger's unlearn-*/gate-* steps), the ratio and every step."""
    if batch.status != "done" or batch.method != "iau":
        raise RuntimeError(f"batch {batch.id} ended {batch.status} by {batch.method} "
                           f"({batch.escalation_reason or batch.error}); the figure times IAU batches")
    science = sum(s for name, s in batch.steps.items() if name.startswith(("unlearn-", "gate-")))
    return {"batch_id": batch.id, "wall_seconds": wall, "science_seconds": science,
            "overhead": (wall - science) / wall, **extra, "steps": dict(batch.steps)}


def _queue(env: dict, bin_dir: Path, ids, count: int) -> None:
    batch = [str(next(ids)) for _ in range(count)]
    _call(env, str(bin_dir / "iau"), "requests", "add", *batch, "--reason", "benchmark")


def _call(env: dict, *args: str, timeout: float = 600) -> str:
    done = subprocess.run(args, cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
    return done.stdout


def make_run_walls(params: Params, enabled: bool) -> dict:
    """Wall seconds of `make run SEEDS="0 1"` with IAU_EXECUTION=local, then dask; one run each (minutes).

    Each run gets an empty MLflow store of its own: the flow reuses every finished run with the same cache key
    (reference models, base models, retraining), so a second run on the first one's store would time only the
    methods. Both are first runs; only the project's materialized data is shared."""
    if not enabled:
        return {"status": "full run only"}
    if "execution" not in Params.model_fields:
        return {"status": "not available: params.yaml has no `execution: local|dask` yet"}
    walls = {}
    for execution in ("local", "dask"):
        with tempfile.TemporaryDirectory(prefix=f"iau-make-run-{execution}-") as store:
            env = {**os.environ, EXECUTION_ENV: execution, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
            start = time.perf_counter()
            done = subprocess.run(["make", "run", "SEEDS=0 1"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                  env=env, check=False)
            walls[execution] = {"seconds": time.perf_counter() - start, "exit": done.returncode,
                                "tail": done.stdout.splitlines()[-3:] + done.stderr.splitlines()[-3:]}
    failed = [e for e, w in walls.items() if w["exit"] != 0]
    if failed:
        return {"status": f"not available: make run failed under {', '.join(failed)}", **walls}
    return {"status": "measured", **walls, "dask_over_local": walls["dask"]["seconds"] / walls["local"]["seconds"]}
