"""Materialize the dataset params.yaml names into the canonical format under data.root:

    python -m iau_core.datasets [--params params.yaml] [--set data.dataset.kind=cifar10 ...]

Records are stored in sample_id order; the ids the project's forgotten.csv lists for the dataset are left out
(tombstoned), so a rebuild never brings a forgotten record back. A dataset under 400 records (100 per role) is
refused. Then version it: `dvc add data` and commit data.dvc (docs/datasets.md, "Bring your own data"). Needs no
orchestration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iau_core.config.cli_args import add_params_arguments, params_from
from iau_core.config.data import MIN_ROLE_SIZE
from iau_core.data import roles_after_forgetting
from iau_core.runtime import prepare_process
from iau_core.sources import (
    CanonicalDataError,
    DatasetSourceMissing,
    forgotten_ids,
    materialize,
    read_canonical,
    read_forgotten,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iau_core.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_params_arguments(parser)
    args = parser.parse_args(argv)
    try:
        params = params_from(parser, args)
    except SystemExit as refused:  # refused in one line already; main returns its exit code
        return int(refused.code)
    prepare_process(params.threads)  # decoding and writing the arrays run torch/numpy threads
    project = Path(args.params).resolve().parent
    try:
        forget = forgotten_ids(project, params.data.dataset.name)  # every rebuild applies forgotten.csv
        folder = materialize(params.data.dataset, project / params.data.root, project, forget=forget,
                             min_records=4 * MIN_ROLE_SIZE)  # D, validation, test, shadow pool
        features, records = read_canonical(folder.parent, folder.name)
    except DatasetSourceMissing as exc:  # the message says what is missing and how to get it
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CanonicalDataError as exc:  # the team's files are wrong (ids, labels, columns): bad input, in one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # the roles params.yaml asks for, drawn now: said here, not first in a flow (which refuses them)
        roles_after_forgetting(records, read_forgotten(folder.parent, folder.name), params.data)
    except ValueError as exc:  # the data is fine; params.yaml must change before a flow runs on it
        print(f"note: the roles in params.yaml do not fit it yet: {exc}")
    counts = records["source"].value_counts().to_dict()
    print(f"{folder}: {len(records)} records {counts}, {len(forget)} forgotten, {records['label'].nunique()} "
          f"classes, inputs "
          f"{features.shape[1:]} {features.dtype}\nversion it: dvc add {params.data.root} && git add "
          f"{params.data.root}.dvc && git commit -m 'data: {folder.name}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
