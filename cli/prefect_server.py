"""The temporary Prefect API server for `iau train` and `iau nightly`, owned by the command.

With no PREFECT_API_URL, Prefect 3 starts a temporary server itself (SubprocessASGIServer: `python -m uvicorn`)
and stops it at exit; a killed `iau` never reaches that exit, so the server lived on as an orphan (~190 MB each).
Prefect 3.8 has no in-process mode to run flows without that server, so `iau` starts the same server itself, with
the kernel told to kill it when `iau` dies (prctl PR_SET_PDEATHSIG), and points Prefect at it.
With PREFECT_API_URL set (a real server, the deployment), nothing is started.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DRAIN_TIMEOUT_S = 10  # for the last log lines and events before the server stops
STARTUP_TIMEOUT_S = 120  # a loaded 2-core machine takes tens of seconds to import the server


class ServerUnavailable(RuntimeError):
    """The temporary Prefect server did not answer in time; nothing was started."""


@contextmanager
def owned_prefect_server() -> Iterator[str | None]:
    """A temporary Prefect server that dies with this process, as Prefect's API for the block; yields its URL,
    or None when PREFECT_API_URL names a server already."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if PREFECT_API_URL.value():
        yield None
        return
    port = free_port()
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(  # the command Prefect's SubprocessASGIServer runs
        [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env=env, preexec_fn=die_with(os.getpid()))
    try:
        url = f"http://127.0.0.1:{port}/api"
        wait_healthy(url, process)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        drain_prefect_workers()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drain_prefect_workers() -> None:
    """Send what Prefect's background workers still hold (the flow's last log lines, its events) while the server
    answers: drained only at exit, after the server is gone, they print '--- Error logging to API ---'."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=DRAIN_TIMEOUT_S)


def die_with(parent: int):
    """For preexec_fn: the child gets SIGKILL when its parent dies, even by SIGKILL. Set by the main thread's
    child, because the kernel sends it when the creating *thread* ends (the main thread lives as long as `iau`)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: no dynamic loading in the forked child

    def set_parent_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would kill us
            os._exit(1)
    return set_parent_death_signal


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"the temporary Prefect server exited ({process.returncode}) before answering; "
                                    "nothing was started")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise ServerUnavailable(f"the temporary Prefect server did not answer within {STARTUP_TIMEOUT_S} s; nothing "
                            "was started (or set PREFECT_API_URL to a running server)")
