"""What the nightly gate says at three batch sizes, on a champion that leaks: the smallest AUC it can detect for the
batch's size, the champion's own headline-attack AUC on the batch's records, and the privacy verdict (passed,
failed, inconclusive) of the IAU candidate, of the retrained model (the gold model: what a perfect deletion
would get) and of every rung of the nightly ladder (nightly.ladder), with which rung the ladder promotes.

    .venv/bin/python -m studies.gate_power [--batches 10,100,1000] [--seed 0] [--set KEY=VALUE ...] [--out F]

The setting is studies/leaking.yaml over params.yaml (the reproduction's, where the original memorizes D), plus
any --set. One champion and one set of reference models are trained; each batch is a random sample of D (seed
`--seed`), unlearned from that champion by IAU (the nightly step) and by retraining on the rest, and judged by
iau_core.deletion.evaluate_gate with params' `nightly.gate`, as `iau nightly` judges a batch. Prints a Markdown
table (and writes it to --out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from iau_core.attacks import fit_attack
from iau_core.config import GOLD
from iau_core.config.cli_args import add_params_arguments, params_from
from iau_core.data import load_bundle
from iau_core.deletion import batch_unlearning, climb_ladder, evaluate_gate
from iau_core.recipe import attack_setup, model_builder, train_original, train_references
from iau_core.runtime import prepare_process
from iau_core.sources import materialized_root
from iau_core.training import resolve_device
from iau_core.unlearning import UnlearningTask, run_method
from studies.provenance import command_line, generated_by

LEAKING = Path(__file__).with_name("leaking.yaml")
CANDIDATES = ("iau", "retrain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.gate_power", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_params_arguments(parser)
    parser.add_argument("--batches", default="10,100,1000", help="batch sizes (deleted records), e.g. 10,100,1000")
    parser.add_argument("--seed", type=int, default=0, help="the champion's seed and the batches' draw")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    try:
        batches = sorted({int(b) for b in args.batches.split(",")})
        if batches[0] < 1:
            raise ValueError
    except ValueError:
        print(f"--batches must be positive integers separated by commas, got {args.batches!r}", file=sys.stderr)
        return 2
    params = params_from(parser, args, base=yaml.safe_load(LEAKING.read_text())).for_seed(args.seed)
    prepare_process(params.threads)
    bundle = load_bundle(params.data, materialized_root(params.data, Path(args.params).resolve().parent))
    device = resolve_device(params.device)
    if batches[-1] >= len(bundle.train):
        print(f"--batches: {batches[-1]} is not less than |D| = {len(bundle.train)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 - progress to stderr, table to stdout
    headline = params.attacks.headline
    attack = fit_attack(headline, train_references(params, bundle, device, log), attack_setup(params, bundle, device))
    champion, report = train_original(params, bundle, device, log)
    gate = params.nightly.gate
    lines = [generated_by(command_line("python -m studies.gate_power", argv)), "",
             f"Setting: studies/leaking.yaml{''.join(', ' + o for o in args.overrides)}; D = {len(bundle.train)}, "
             f"the champion trained {report.epochs_run} epochs (seed {args.seed}); gate: {headline}, "
             f"max_attack_advantage {gate.max_attack_advantage}, noise_z {gate.noise_z}, max_val_acc_drop "
             f"{gate.max_val_acc_drop}. Each batch is a random sample of D; non-members are held-out records "
             "label-matched to it.\n",
             "| batch | smallest detectable AUC | champion's AUC | candidate | its AUC | val drop (points) | verdict |",
             "| ---: | ---: | ---: | --- | ---: | ---: | --- |"]
    rng = np.random.default_rng(args.seed)
    unlearning = batch_unlearning(params)  # the nightly stop rule for the ladder's iterative rungs
    ladder_rows = []
    for size in batches:
        forget_ids = np.sort(rng.choice(bundle.train.ids.cpu().numpy(), size=size, replace=False))
        forget, retain = bundle.train.partition(forget_ids)
        task = UnlearningTask(model=champion, retain=retain.to(device), forget=forget.to(device),
                              val=bundle.val.to(device), build_model=model_builder(params, bundle),
                              training=params.training, unlearning=unlearning, device=device, seed=params.seed)
        judged: dict[str, tuple] = {}

        def attempt(method: str, earlier: list, task=task, forget=forget, judged=judged) -> tuple:
            if method not in judged:  # each method runs once per batch, whether the ladder or a row asks
                run = run_method(method, task)
                judged[method] = (run.model, evaluate_gate(champion, run.model, forget, bundle.val, bundle.test,
                                                           attack, gate, device, params.seed, headline), run.seconds)
            return judged[method]

        _, attempts = climb_ladder(params.nightly.ladder, attempt, gate.when_inconclusive)
        for method in CANDIDATES:
            attempt(method, [])
        for method, (_, found, _) in judged.items():
            lines.append(f"| {size} | {found.auc_threshold:.3f} | {found.forget_auc_champion:.3f} | {method} | "
                         f"{found.forget_auc_candidate:.3f} | {found.val_acc_drop:+.2f} | {found.privacy_verdict}"
                         f"{'' if found.passed or found.privacy_verdict != 'passed' else ' (utility failed)'} |")
            log(lines[-1])
        promoted = next((a.method for a in attempts if a.accepted), "none")
        spent = sum(a.seconds for a in attempts)
        ladder_rows.append(f"| {size} | {' → '.join(f'{a.method} ({a.gate.privacy_verdict})' for a in attempts)} | "
                           f"{promoted} | {spent:.1f} | {judged[GOLD][2]:.1f} | {judged[GOLD][2] / spent:.1f}x |")
    lines += ["", f"**The nightly ladder** `{list(params.nightly.ladder)}` (nightly.ladder; iterative rungs stop by "
              f"nightly.stop_rule: target {unlearning.stop_rule.target}, chance_z {unlearning.stop_rule.chance_z}): "
              "each rung unlearned from the champion and gated, the first the gate accepts promoted "
              f"(when_inconclusive: {gate.when_inconclusive}). Seconds: the rungs' unlearning, tried in order, "
              "against retraining's.", "",
              "| batch | rungs tried (privacy verdict) | promoted | seconds | retraining's seconds | retraining / "
              "ladder |", "| ---: | --- | --- | ---: | ---: | ---: |", *ladder_rows]
    lines.append(f"\n({time.perf_counter() - start:.0f} s on {device}, `python -m studies.gate_power "
                 f"{' '.join(argv if argv is not None else sys.argv[1:])}`.)")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
