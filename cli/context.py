"""What every `iau` command shares: the settings of its call (the ledger URL, the project folder, params.yaml read
once) and the ledger opened with its failures turned into one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer
from sqlalchemy.exc import SQLAlchemyError

from cli.errors import BAD_INPUT, UNAVAILABLE, fail
from ledger import Ledger, LedgerError, RequestError, ledger_url
from ledger.migrate import masked


@dataclass(frozen=True)
class Settings:
    ledger_url: str | None
    project: Path | None  # --project, if given

    @property
    def project_root(self) -> Path:
        """The project folder (stores/project.py); outside any project, one line naming what was looked for."""
        from stores.project import ProjectNotFound, project_root

        try:
            return project_root(self.project)
        except ProjectNotFound as exc:
            fail(str(exc), BAD_INPUT)

    def url(self) -> str:
        return self.ledger_url or ledger_url(self.project_root)

    def params(self, overrides: list[str] | None = None):
        """params.yaml of the project (with --set overrides), validated: the one read of a command, before it
        opens anything. Any way it is wrong is bad input: one line, exit 2."""
        from iau_core.config import ParamsError, load_params, parse_overrides

        try:
            return load_params(self.project_root / "params.yaml", parse_overrides(overrides or []))
        except ParamsError as exc:
            fail(str(exc), BAD_INPUT)
        except OSError as exc:
            fail(f"cannot read {self.project_root / 'params.yaml'}: {exc.strerror or exc}", UNAVAILABLE)


@contextmanager
def opened(ctx: typer.Context) -> Iterator[Ledger]:
    """The ledger, with its failures turned into one line on stderr and an exit code (never a traceback)."""
    url = ctx.obj.url()
    try:
        with Ledger(url) as ledger:
            yield ledger
    except RequestError as exc:
        fail(str(exc), BAD_INPUT)
    except LedgerError as exc:
        fail(str(exc), UNAVAILABLE)
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"the ledger at {masked(url)} cannot be used: {cause}", UNAVAILABLE)
