"""A killed `iau train` leaves no Prefect server behind: without PREFECT_API_URL the command runs a temporary
Prefect API server of its own (cli/prefect_server.py), and a SIGKILL of `iau` must take that server with it. The
project here has no champion, and needs none: the command is killed as soon as its server is up, long before any
training, so this test does not share test_nightly.py's trained project. Shared commands and the nightly tests'
project settings are tests/nightly_helpers.py."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.nightly_helpers import PYTHON, SMALL

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project of its own (sandbox/projects.py), as test_nightly.py makes it, with no champion trained."""
    from sandbox.projects import make_project

    root = make_project(tmp_path / "project", SMALL)
    # the project's own MLflow store, as nightly_helpers.trained_champion sets it for the trained project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_train_leaves_no_prefect_server_behind(project, tmp_path):
    """Without PREFECT_API_URL, `iau train` runs its own temporary Prefect server; SIGKILLing `iau` must take the
    server with it (Prefect's own temporary server outlived every kill, ~190 MB each)."""
    import time

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"IAU_PROJECT_DIR": str(project), "PREFECT_HOME": str(tmp_path / "prefect-home")})
    process = subprocess.Popen([str(Path(PYTHON).parent / "iau"), "train"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        servers: list[int] = []
        while not servers and time.monotonic() < deadline and process.poll() is None:
            servers = [pid for pid in children_of(process.pid)
                       if b"prefect.server.api.server" in (Path("/proc") / str(pid) / "cmdline").read_bytes()]
            time.sleep(0.2)
        assert servers, "iau train started no temporary Prefect server"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in servers if alive(pid)], "the temporary Prefect server outlived `iau`"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
