"""The bare recipe, for a box with torch and no orchestration (a GPU machine):

    python -m iau_core [--params params.yaml] [--set selection.strategy=random ...] [--schema]

Same science as the `unlearn` flow (the same loop, iau_core.recipe.run_recipe), without Prefect, MLflow or DVC:
it prints the comparison table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from iau_core.config import ParamsError, load_params, parse_overrides, schema
from iau_core.data import load_bundle
from iau_core.metrics import readable, summarize
from iau_core.recipe import LocalSteps, run_recipe
from iau_core.runtime import prepare_process
from iau_core.sources import materialized_root
from iau_core.training import resolve_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iau_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--schema", action="store_true", help="print the JSON schema of params.yaml and exit")
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(schema(), indent=2))
        return 0
    try:
        params = load_params(args.params, parse_overrides(args.overrides))
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        return 2
    prepare_process(params.threads)
    root = materialized_root(params.data, Path(args.params).resolve().parent)
    device = resolve_device(params.device)
    start = time.perf_counter()
    comparison = run_recipe(params, LocalSteps(params, load_bundle(params.data, root), device))
    print(readable(summarize([t.drop(columns="seed") for t in comparison.tables()])))
    print(f"device {device}, total {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
