"""Real Prefect and MLflow servers for the end-to-end tests and the benchmark, started on loopback in temporary
folders and always stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
QUIET = {"DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
         "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


@contextmanager
def stopped_at_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def prefect_server(home: Path) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME (SQLite in it); yields the
    environment a client needs (PREFECT_API_URL) and stops the server afterwards."""
    port = free_port()
    # the UI asks the API its settings name (PREFECT_UI_API_URL), by default on port 4200 whatever --port says
    env = {**os.environ, **QUIET, "PREFECT_HOME": str(home), "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                    str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    with stopped_at_exit(process):
        wait_for(f"http://127.0.0.1:{port}/api/health", process, log)
        yield {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(home)}


@contextmanager
def prefect_worker(pool: str, env: dict[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen]:
    """A process worker polling `pool`, with `env` (the server's URL, the project's stores)."""
    with open(log, "w") as out:
        process = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool],
                                   env={**os.environ, **QUIET, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    with stopped_at_exit(process):
        yield process


@contextmanager
def mlflow_server(home: Path, backend_store_uri: str) -> Iterator[str]:
    """`mlflow server` on a free loopback port with `backend_store_uri` (e.g. PostgreSQL) and the artifacts served by
    the server itself (--serve-artifacts) from home/artifacts; yields its tracking URI and stops it afterwards.
    The backend URI travels in the server's environment (MLFLOW_BACKEND_STORE_URI), as a team's password would:
    never on its command line, where `ps` shows it."""
    port = free_port()
    # No job runner: its consumer processes serve MLflow's GenAI jobs, which this pipeline never submits.
    env = {**os.environ, **QUIET, "MLFLOW_BACKEND_STORE_URI": backend_store_uri,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = home / "mlflow-server.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                                    "--serve-artifacts", "--artifacts-destination", str(home / "artifacts"),
                                    "--workers", "1"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home)
    with stopped_at_exit(process):
        wait_for(f"http://127.0.0.1:{port}/health", process, log, seconds=180)
        yield f"http://127.0.0.1:{port}"
