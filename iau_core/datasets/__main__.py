"""Materialize the dataset params.yaml names into the canonical format under data.root:

    python -m iau_core.datasets [--params params.yaml] [--set data.dataset.kind=cifar10 ...]

Then version it: `dvc add data` and commit data.dvc (docs/datasets.md, "Bring your own data"). Needs no orchestration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iau_core.config import ParamsError, load_params, parse_overrides
from iau_core.runtime import prepare_process
from iau_core.sources import CanonicalDataError, DatasetSourceMissing, materialize, read_canonical


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iau_core.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, parse_overrides(args.overrides))
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        return 2
    prepare_process(params.threads)  # decoding and writing the arrays run torch/numpy threads
    project = Path(args.params).resolve().parent
    try:
        folder = materialize(params.data.dataset, project / params.data.root, project)
    except (DatasetSourceMissing, CanonicalDataError) as exc:  # the message says what is missing or wrong
        print(exc, file=sys.stderr)
        return 1
    features, records = read_canonical(folder.parent, folder.name)
    counts = records["source"].value_counts().to_dict()
    print(f"{folder}: {len(records)} records {counts}, {records['label'].nunique()} classes, inputs "
          f"{features.shape[1:]} {features.dtype}\nversion it: dvc add {params.data.root} && git add "
          f"{params.data.root}.dvc && git commit -m 'data: {folder.name}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
