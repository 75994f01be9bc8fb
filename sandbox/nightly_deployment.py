"""One nightly deletion batch run as production runs it, in a sandbox: a tiny digits project (projects.py), a
Prefect server on loopback (servers.py), `prefect deploy --all` from prefect.yaml, a champion (`iau train`), a few
deletion requests, then `prefect deployment run deletion-batch/nightly` through a process worker.

    python -m sandbox.nightly_deployment [--requests 3]

prints one JSON line (the UI's address, the flow run's id and address, what the run printed) once the run ended,
then keeps the server up until its stdin closes, so that a browser can look (reporting/prefect_ui_check.py).
A step that fails ends it with exit status 1 and one line on stderr naming the step. Only CLIs are called here
(this package imports no orchestration library): what an operator types.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.projects import BIN, REPO, make_project
from sandbox.servers import prefect_server, prefect_worker

POOL = "iau-local"  # prefect.yaml's work pool
TINY = {  # seconds per epoch on 2 cores: the champion and the batch take a few minutes together
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 500, "val_size": 200, "test_size": 300, "shadow_pool_size": 600},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 5, "patience": 3},
    "mia": {"num_shadow": 2, "epochs": 10},
    "lira": {"num_reference": 2},
    "tracking": {"experiment": "prefect-ui-check", "registered_model": "ui-check-base",
                 "deployed_model": "ui-check-deployed"},
    # two trainings at this scale differ by several validation points: the utility limit is wide, as in
    # tests/test_nightly.py, so the run shows a batch through (the gate's own checks: tests/test_deletion.py)
    "nightly": {"gate": {"max_val_acc_drop": 15.0}},
}


class StepFailed(RuntimeError):
    pass


def call(step: str, env: dict, *args: str, timeout: float = 900) -> str:
    """One command of the run; its stdout. StepFailed names the step and the output's last line."""
    print(f"sandbox: {step}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(args, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{step}: no answer in {timeout:.0f} s") from None
    if done.returncode != 0:
        last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["(no output)"]
        raise StepFailed(f"{step}: exit {done.returncode}: {last[0][:300]}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3, help="deletion requests to queue before the run")
    args = parser.parse_args(argv)
    prefect, iau = str(BIN / "prefect"), str(BIN / "iau")
    with tempfile.TemporaryDirectory(prefix="iau-prefect-ui-") as tmp:
        tmp = Path(tmp)
        try:
            project = make_project(tmp / "project", TINY)
        except AssertionError as exc:
            print(f"sandbox project: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        stores = {"IAU_PROJECT_DIR": str(project), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
                  "PREFECT_WORKER_QUERY_SECONDS": "1"}  # a manual run is picked up at once, not after 10 s
        with prefect_server(tmp) as server:
            env = {**server, **stores}
            try:
                call("work pool", env, prefect, "work-pool", "create", POOL, "--type", "process")
                call("prefect deploy", {**env, "IAU_CODE_DIR": str(REPO), "IAU_NIGHTLY_TIMEZONE": "UTC"}, prefect,
                     "--no-prompt", "deploy", "--all")
                call("iau train", env, iau, "train", timeout=1800)
                ids = call("iau data ids", env, iau, "data", "ids").split()[:args.requests]
                call("iau requests add", env, iau, "requests", "add", *ids, "--reason", "prefect ui check")
                with prefect_worker(POOL, env, tmp / "worker.log", REPO):
                    printed = call("prefect deployment run", env, prefect, "deployment", "run",
                                   "deletion-batch/nightly", "--watch", timeout=1800)
            except StepFailed as exc:
                print(str(exc), file=sys.stderr)
                return 1
            flow_run = re.search(r"UUID: (\S+)", printed)
            url = re.search(r"URL: (http\S+)", printed)
            if not flow_run:
                print("prefect deployment run: no flow run id in its output", file=sys.stderr)
                return 1
            ui = server["PREFECT_API_URL"].removesuffix("/api")
            print(json.dumps({"ui": ui, "api": server["PREFECT_API_URL"], "flow_run_id": flow_run.group(1),
                              "flow_run_url": url.group(1) if url else f"{ui}/runs/flow-run/{flow_run.group(1)}",
                              "requests": [int(i) for i in ids], "watch_tail": printed.strip().splitlines()[-1]}),
                  flush=True)
            sys.stdin.read()  # the caller closes stdin once its browser is done
    return 0


if __name__ == "__main__":
    sys.exit(main())
