"""The bare recipe, for a box with torch and no orchestration (a GPU machine):

    python -m iau_core [--params params.yaml] [--set selection.strategy=random ...] [--schema]

Same science as the `unlearn` flow, without Prefect, MLflow or DVC: it prints the comparison table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from iau_core.config import ParamsError, load_params, schema
from iau_core.data import load_bundle
from iau_core.experiment import attack_strength, methods_to_run, train_attack, train_original, unlearn_and_score
from iau_core.metrics import compare
from iau_core.selection import select_forget_set
from iau_core.sources import materialize
from iau_core.training import resolve_device


def parse_overrides(items: list[str]) -> dict:
    """['selection.strategy=random', 'training.lr=0.01'] -> nested dict, values parsed as YAML scalars."""
    nested: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParamsError(f"--set expects KEY=VALUE, got {item!r}")
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


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
    root = Path(args.params).resolve().parent / params.data.root
    if not (root / params.data.dataset).is_dir():
        materialize(params.data.dataset, root)
    device = resolve_device(params.device)
    bundle = load_bundle(params.data, params.seed, root)
    start = time.perf_counter()
    original, report = train_original(params, bundle, device)
    print(f"original: {report.epochs_run} epochs, best val acc {report.best_val_acc:.2f}% ({report.seconds:.1f}s)")
    forget_ids = select_forget_set(bundle.train, params.selection)
    attack, _ = train_attack(params, bundle, device)
    print(f"attack_strength: {attack_strength(attack, original, bundle, device, params.seed):.2f}%"
          f" | forget set: {len(forget_ids)} records ({params.selection.strategy})")
    outcomes = {m: unlearn_and_score(m, original, forget_ids, params, bundle, attack, device)
                for m in methods_to_run(params)}
    table = compare({m: o.scores for m, o in outcomes.items()}, {m: o.seconds for m, o in outcomes.items()})
    print(table.round(3).to_string())
    print(f"device {device}, total {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
