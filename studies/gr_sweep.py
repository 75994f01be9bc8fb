"""Which GR reading and alpha (paper Eq. 7)? Train the default model with each and measure, on data that is not
the test set, what GR is meant to change: per-sample gradient norms on D (mean, p99, max), validation accuracy,
the epoch early stopping ends at, and the cost of an epoch.

    .venv/bin/python -m studies.gr_sweep [--max-epochs 30] [--configs batch:0.005,per_sample:0.01] > out.md

alpha = 0 is always included as the baseline. Uses params.yaml's data, model and recipe, its first seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from iau_core.config import load_params
from iau_core.data import load_bundle
from iau_core.recipe import model_builder
from iau_core.training import per_sample_grad_norms, resolve_device, train_model

DEFAULT_CONFIGS = "batch:0,batch:0.005,batch:0.05,batch:0.2,per_sample:0.005,per_sample:0.02"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="reading:alpha,... (reading batch|per_sample)")
    args = parser.parse_args()
    params = load_params(args.params)
    root = Path(args.params).resolve().parent / params.data.root
    bundle = load_bundle(params.data, root)
    device = resolve_device(params.device)
    print("| reading | alpha | mean norm | p99 | max | val acc | best epoch | stopped at | early stop | s/epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for item in args.configs.split(","):
        reading, alpha = item.split(":")
        recipe = params.training.model_copy(update={"gr_reading": reading, "gr_alpha": float(alpha),
                                                     "max_epochs": args.max_epochs})
        model = model_builder(params, bundle)(params.seed)
        start = time.perf_counter()
        report = train_model(model, bundle.train, bundle.val, recipe, device, params.seed)
        per_epoch = (time.perf_counter() - start) / report.epochs_run
        norms = per_sample_grad_norms(model, bundle.train, device).numpy()
        print(f"| {reading} | {alpha} | {norms.mean():.2f} | {np.percentile(norms, 99):.1f} | {norms.max():.0f} "
              f"| {report.best_val_acc:.2f} | {report.best_epoch} | {report.epochs_run} | "
              f"{'yes' if report.stopped_early else 'no'} | {per_epoch:.2f} |", flush=True)


if __name__ == "__main__":
    main()
