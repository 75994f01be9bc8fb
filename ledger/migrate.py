"""Connecting to the ledger's database and bringing its schema to the newest migration.

SQLite by default, PostgreSQL by URL. Both are configured here once, so every caller gets the same behaviour:
- SQLite: each transaction starts with BEGIN IMMEDIATE (writers queue on the file instead of failing half-way
  with 'database is locked'), WAL (readers don't wait for a writer), foreign keys on, a 30 s busy timeout.
- PostgreSQL: a bare `postgresql://` URL means psycopg 3 (the driver this project pins).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ledger.errors import LedgerUrlError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: PostgreSQL sessions migrating at once queue on this advisory lock instead of racing.
PG_MIGRATION_LOCK = 0x1A0_1ED6E4
SQLITE_BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 10


def normalize_url(url: str | URL) -> URL:
    """The URL with the project's driver for PostgreSQL filled in; other dialects as given."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def masked(url: str | URL) -> str:
    """The URL safe to print or log: its password (if any) replaced by ***, in the user part or the query string
    (`?password=...`, which libpq reads too). Text that is not a URL is not shown at all (it might hold a password
    in a shape we cannot find)."""
    try:
        parsed = make_url(url)
        secret = {k: "***" for k in parsed.query if k.lower() in ("password", "passwd", "pwd", "sslpassword")}
        return parsed.update_query_dict(secret).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except (ArgumentError, ValueError):
        return "<not a database URL>"


EXPECTED_URL = "sqlite:///path/to/ledger.db or postgresql://user@host/db"


def checked_url(url: str | URL) -> URL:
    """The parsed URL, or LedgerUrlError in one line before any driver is imported or file created: only SQLite
    (whose folder must exist) and PostgreSQL are supported."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise LedgerUrlError(f"the ledger URL is not a database URL; expected {EXPECTED_URL}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise LedgerUrlError(f"the ledger URL {masked(parsed)} uses {backend!r}; only sqlite and postgresql are "
                             f"supported ({EXPECTED_URL})")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise LedgerUrlError(f"the ledger URL {masked(parsed)} names no file; expected {EXPECTED_URL}")
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise LedgerUrlError(f"the ledger URL {masked(parsed)} is in the folder {folder}, which does not exist")
    return parsed


def make_engine(url: str | URL) -> Engine:
    parsed = normalize_url(checked_url(url))
    if parsed.get_backend_name() != "sqlite":  # an unreachable host fails in seconds, not the OS's minutes
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver's own implicit BEGIN is off; _on_begin emits ours
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(url: str | URL | None = None) -> Config:
    """Alembic's configuration, built in code (no alembic.ini): where the migrations are, and optionally a URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        # configparser treats % specially; a password may contain one
        config.set_main_option("sqlalchemy.url", normalize_url(url).render_as_string(hide_password=False)
                               .replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Run every migration not yet applied, in one transaction (safe to call from many processes at once)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def head_revision() -> str:
    """The newest migration's id (what a database opened by a Ledger is at)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
