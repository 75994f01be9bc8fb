"""How `iau` refuses: one line on stderr, `error: ...`, and an exit code; never a traceback, a usage panel, a
secret or a raw control character.

Exit codes: 0 done, 1 the ledger, the stores or the data could not be used, 2 bad input (nothing was written).
Click's own usage errors (an unknown option such as a negative id without `--`, a text where a number goes, a
missing `--reason`) come through `OneLineErrors`, the app's group, in the same one-line shape.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from typer._click import exceptions as click_errors  # Typer's own copy of Click: its errors are these classes
from typer.core import TyperGroup

from reporting.text import escaped

BAD_INPUT = 2
UNAVAILABLE = 1
MAX_LINE = 2000  # characters: a refusal stays one bounded line whatever the input was (our own fixes fit)


def fail(message: str, code: int) -> NoReturn:
    """Refuse in one line: the message escaped (a path or an id may hold ESC), bounded, on stderr."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(message: str | BaseException) -> str:
    """A message (or an exception's) on one bounded line with its control characters escaped."""
    text = str(message)
    joined = joined_lines(text)
    if not joined and isinstance(message, BaseException):
        joined = type(message).__name__
    joined = escaped(joined)
    return joined if len(joined) <= MAX_LINE else joined[:MAX_LINE - 3] + "..."


def joined_lines(text: str) -> str:
    """Lines joined by '; ', a heading that ends in ':' by a space ("invalid params: training.lr: ...")."""
    out = ""
    for line in (line.strip() for line in text.strip().splitlines()):
        if line:
            out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


class OneLineErrors(TyperGroup):
    """The app's group: Click's usage errors become one `error:` line naming the command, exit 2."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # `iau requests`: the help it asked for, as Click does
            exc.show()
            return exit_with(exc.exit_code, standalone_mode)
        except click_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "iau"
            hint = " (a negative number is never a sample id)" if "No such option: -" in exc.format_message() \
                and exc.format_message().rstrip(".").split(": -")[-1].isdigit() else ""
            typer.echo(f"error: {where}: {one_line(exc.format_message())}{hint}", err=True)
            return exit_with(BAD_INPUT, standalone_mode)
        except click_errors.ClickException as exc:
            typer.echo(f"error: {one_line(exc.format_message())}", err=True)
            return exit_with(exc.exit_code, standalone_mode)
        except typer.Abort:  # Ctrl-C at a prompt (Typer has its own Abort, not in its copy of Click)
            typer.echo("error: aborted", err=True)
            return exit_with(UNAVAILABLE, standalone_mode)
        # without standalone mode Click returns an Exit's code (ours: 1 or 2) in place of the command's None
        return exit_with(result if isinstance(result, int) else 0, standalone_mode)


def exit_with(code: int, standalone_mode: bool) -> int:
    if standalone_mode:
        sys.exit(code)
    return code
