"""The bare recipe, for a box with torch and no orchestration (a GPU machine):

    python -m iau_core [--params params.yaml] [--set selection.strategy=random ...] [--schema]

Same science as the `unlearn` flow (the same loop, iau_core.recipe.run_recipe), without Prefect, MLflow or DVC:
it prints the comparison table.
"""

from __future__ import annotations

from iau_core.runtime import quiet_offline_env

quiet_offline_env()  # an entry point: before torch loads OpenMP (iau_core/runtime.py)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from iau_core.config import schema  # noqa: E402
from iau_core.config.cli_args import add_params_arguments, params_from  # noqa: E402
from iau_core.data import load_bundle  # noqa: E402
from iau_core.metrics import readable, summarize  # noqa: E402
from iau_core.recipe import LocalSteps, run_recipe  # noqa: E402
from iau_core.runtime import prepare_process  # noqa: E402
from iau_core.sources import materialized_root  # noqa: E402
from iau_core.training import resolve_device  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iau_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_params_arguments(parser)
    parser.add_argument("--schema", action="store_true", help="print the JSON schema of params.yaml and exit")
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(schema(), indent=2))
        return 0
    try:
        params = params_from(parser, args)
    except SystemExit as refused:  # refused in one line already; main returns its exit code
        return int(refused.code)
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
