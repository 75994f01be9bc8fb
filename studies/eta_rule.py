"""The eta rule (2 validation passes; 1 with the nightly cache's logits) against the full scan it replaced and
against itself with the confirming third pass it had until issue 29, on the default setting.

Trains the deployed model (params.yaml's recipe, first seed), then for each forget-set selection runs the rules on
the same IAU direction: the etas chosen, the validation passes each made, and their seconds.

    IAU_THREADS=1 .venv/bin/python -m studies.eta_rule [--selections outliers,random] > out.md
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import EtaRule, load_params
from iau_core.data import Split, load_bundle
from iau_core.recipe import train_original
from iau_core.runtime import prepare_process
from iau_core.selection import select_forget_set
from iau_core.training import accuracy, per_sample_losses, predict_logits, resolve_device
from iau_core.unlearning.gradients import choose_eta, iau_direction_and_line, step


def choose_eta_by_full_scan(model: nn.Module, direction: list[torch.Tensor], forget: Split, val: Split,
                            rule: EtaRule, device: torch.device) -> tuple[float, int]:
    """The rule as it was before validation passes were capped: the validation set read in full at every
    candidate. The reference the capped rule is compared with; returns (eta, validation passes)."""
    theta = [p.detach().clone() for p in model.parameters()]
    base = accuracy(model, val, device)
    target = F.cross_entropy(predict_logits(model, val, device), val.y.cpu()).item()
    chosen, passes = 0.0, 1
    for k in range(rule.max_candidates):
        eta = rule.start * rule.growth ** k
        step(model, theta, direction, eta)
        passes += 1
        if base - accuracy(model, val, device) > rule.val_drop_budget:
            break
        chosen = eta
        if per_sample_losses(model, forget, device).mean().item() >= target:
            break
    step(model, theta, direction, chosen)
    return chosen, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--selections", default="outliers,random")
    args = parser.parse_args()
    params = load_params(args.params)
    prepare_process(params.threads)
    bundle = load_bundle(params.data, Path(args.params).resolve().parent / params.data.root)
    device = resolve_device(params.device)
    model, _ = train_original(params, bundle, device)
    rule, settings = params.unlearning.eta_rule, params.unlearning
    print(f"{params.data.dataset} {params.model.name}, {len(bundle.train)} records, val {len(bundle.val)}, "
          f"reduction {settings.reduction}, seed {params.seed}\n")
    print("| selection | full scan: eta | passes | s | capped: eta | passes | D_f reads | s | reason "
          "| confirmed: eta | passes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for strategy in args.selections.split(","):
        selection = params.selection.model_copy(update={"strategy": strategy})
        forget, retain = bundle.train.partition(select_forget_set(bundle.train, selection, params.seed))
        direction, line = iau_direction_and_line(model, retain, forget, settings.batch_size, settings.reduction)
        start = time.perf_counter()
        old, old_passes = choose_eta_by_full_scan(copy.deepcopy(model), direction, forget, bundle.val, rule, device)
        old_s, start = time.perf_counter() - start, time.perf_counter()
        new = choose_eta(copy.deepcopy(model), direction, forget, bundle.val, rule, device, line=line)
        new_s = time.perf_counter() - start
        confirmed = choose_eta(copy.deepcopy(model), direction, forget, bundle.val, rule, device, line=line,
                               confirm=True)
        print(f"| {strategy} | {old:.3g} | {old_passes} | {old_s:.2f} | {new.eta:.3g} | {new.validation_passes} | "
              f"{new.candidates} | {new_s:.2f} | {new.reason} | {confirmed.eta:.3g} | "
              f"{confirmed.validation_passes} |", flush=True)


if __name__ == "__main__":
    main()
