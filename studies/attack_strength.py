"""Which attack sees more: offline RMIA against offline LiRA, with 4 and with 8 reference models, on the deployed
model (all of D as members against the held-out test set, the parent run's `<attack>_strength`). The stronger one
should be `attacks.headline`, the attack the nightly gate judges by and the comparison leads with.

    .venv/bin/python -m studies.attack_strength [--params params.yaml] [--set KEY=VALUE ...] [--references 4,8]

Each --set changes params.yaml for this run (e.g. the reproduction's leaking setting); the table says which.
Reference models are trained once (the largest count) and the smaller counts use the first of them, so the two
counts differ only in how many models the attacks learn from. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from iau_core.attacks import fit_attack
from iau_core.config.cli_args import add_params_arguments, params_from
from iau_core.data import load_bundle
from iau_core.deletion import chance_auc_std
from iau_core.recipe import attack_setup, train_original, train_references
from iau_core.runtime import prepare_process
from iau_core.sources import materialized_root
from iau_core.training import resolve_device
from studies.provenance import command_line, generated_by

COMPARED = ("lira", "rmia")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.attack_strength", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_params_arguments(parser)
    parser.add_argument("--references", default="4,8", help="reference-model counts to compare, e.g. 4,8")
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(c) for c in args.references.split(",")})
        if counts[0] < 1:
            raise ValueError
    except ValueError:
        print(f"--references must be positive integers separated by commas, got {args.references!r}", file=sys.stderr)
        return 2
    params = params_from(parser, args)
    prepare_process(params.threads)
    params = params.model_copy(update={"lira": params.lira.model_copy(update={"num_reference": counts[-1]})})
    bundle = load_bundle(params.data, materialized_root(params.data, Path(args.params).resolve().parent))
    device = resolve_device(params.device)
    start = time.perf_counter()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 - progress to stderr, table to stdout
    references = train_references(params, bundle, device, log)
    original, report = train_original(params, bundle, device, log)
    setup = attack_setup(params, bundle, device)
    setting = ", ".join(args.overrides) or "params.yaml as it is"
    print(generated_by(command_line("python -m studies.attack_strength", argv)) + "\n")
    print(f"Setting: {setting}. D = {len(bundle.train)} members against {len(bundle.test)} held-out records; the "
          f"deployed model trained {report.epochs_run} epochs (best val acc {report.best_val_acc:.2f}%). "
          f"rmia.offline_a = {params.rmia.offline_a}, gamma = {params.rmia.gamma}.\n")
    if len(bundle.test) < 1000:  # the lowest nonzero FPR is 1 / non-members (Roc)
        print(f"With {len(bundle.test)} held-out records (< 1,000) the 0.1% FPR column is the TPR at FPR 0.\n")
    print("| references | attack | AUC | TPR at 1% FPR | TPR at 0.1% FPR |")
    print("| --- | --- | --- | --- | --- |")
    verdicts = []
    for count in counts:
        aucs = {}
        for name in COMPARED:
            seen = fit_attack(name, references[:count], setup).roc(original, bundle.train, bundle.test, device)
            print(f"| {count} | {name} | {seen.auc:.3f} | {seen.tpr_at_1pct_fpr:.3f} | {seen.tpr_at_0_1pct_fpr:.3f} |",
                  flush=True)
            aucs[name] = seen.auc
        ranked = sorted(aucs, key=aucs.get, reverse=True)
        margin = aucs[ranked[0]] - aucs[ranked[1]]
        # below one null standard deviation of the AUC for these sizes the two cannot be told apart
        noise = chance_auc_std(len(bundle.train), len(bundle.test))
        verdicts.append(f"{count} references: " + (f"{ranked[0]} (+{margin:.3f} AUC)" if margin > noise else
                                                   f"no difference beyond noise ({margin:.3f} < {noise:.3f})"))
    print("\nStronger by AUC at " + "; ".join(verdicts) + f". ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
