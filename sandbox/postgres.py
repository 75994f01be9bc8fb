"""A throwaway PostgreSQL server (the ledger's and the MLflow server's tests): Debian's binaries, a temporary data
directory, loopback only.

`running_postgres()` yields the URL of its `postgres` database, or raises Unavailable (tests skip with its
reason) when there are no server binaries. Started as the `postgres` user when the tests run as root, because
the server refuses to run as root. Durability is off (fsync) to keep it fast: nothing here outlives the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINDIR_ENV = "IAU_PG_BINDIR"  # a folder holding initdb and pg_ctl, where they are not in the usual places


class Unavailable(RuntimeError):
    """No PostgreSQL server binaries here (or no way to run them as a non-root user)."""


def find_bindir() -> Path:
    candidates = [os.environ.get(BINDIR_ENV, "")]
    try:
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                         timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise Unavailable("PostgreSQL server binaries not found (apt-get install postgresql, or set "
                      f"{BINDIR_ENV}): the PostgreSQL cases are skipped")


def _version(folder: str) -> int:
    name = Path(folder).parent.name
    return int(name) if name.isdigit() else 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_postgres() -> Iterator[str]:
    bindir = find_bindir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            raise Unavailable("running as root without `runuser`: cannot start PostgreSQL as a non-root user")
        as_user = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="iau-pg-"))  # not under pytest's root-only tmp: postgres must reach it
    if as_user:
        shutil.chown(home, user="postgres")
    data, port = home / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = (home / "server.log").read_text() if (home / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{log}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
            "--locale=C")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60",
            "-o", f"-h 127.0.0.1 -p {port} -k {home} -F", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """A new empty database on the server; returns its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    conninfo = f"host={url.host} port={url.port} user={url.username} dbname={url.database}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)
