"""The `--params FILE` and `--set KEY=VALUE` arguments of the argparse entry points (`python -m iau_core`,
`python -m iau_core.datasets`, `python -m flows.unlearn`, the studies, the benchmarks), and reading them into
Params once, before anything starts: every way the file or a --set is wrong ends the command in one line, exit 2.

`iau` (cli/main.py) has its own Typer options, read through the same load_params and parse_overrides.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from iau_core.config.base import ParamsError
from iau_core.config.params import Params, deep_merge, load_params, parse_overrides


def add_params_arguments(parser: argparse.ArgumentParser, params_file: bool = True) -> None:
    """--params (unless the command always reads the project's params.yaml) and the repeatable --set."""
    if params_file:
        parser.add_argument("--params", default="params.yaml", metavar="FILE",
                            help="the params file (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter for this run, e.g. --set training.lr=0.01 (repeatable)")


def overrides_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The --set overrides as a nested dict, or the command refused in one line."""
    try:
        return parse_overrides(args.overrides)
    except ParamsError as exc:
        refuse(parser, exc)


def params_from(parser: argparse.ArgumentParser, args: argparse.Namespace, path: str | Path | None = None,
                base: dict | None = None, extra: dict | None = None) -> Params:
    """The params file (`path`, else --params) with `base` (a study's setting) under the --set overrides and
    `extra` (the command's own options) over them, validated; or the command refused in one line, exit 2."""
    overrides = deep_merge(deep_merge(base or {}, overrides_from(parser, args)), extra or {})
    try:
        return load_params(path if path is not None else args.params, overrides)
    except ParamsError as exc:
        refuse(parser, exc)


def refuse(parser: argparse.ArgumentParser, exc: Exception) -> NoReturn:
    """`<prog>: error: <the message on one line>`, exit 2 (argparse's own shape for a bad argument)."""
    text = ""
    for line in (line.strip() for line in str(exc).splitlines()):  # "invalid params: training.lr: ..."
        if line:
            text += line if not text else (" " if text.endswith(":") else "; ") + line
    parser.exit(2, f"{parser.prog}: error: {text}\n")
