"""K reference models trained together (lira.reference_training: ensemble) against one after another.

The default model and recipe on a small shadow pool, a fixed number of epochs (patience = epochs, so both modes
do the same work); wall and CPU seconds of each mode, and the largest weight difference between the two.

    IAU_THREADS=1 .venv/bin/python -m studies.reference_training [--count 8] [--pool 1000] [--epochs 2] \
        [--hvp double_backward]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from iau_core.attacks.references import train_reference_models
from iau_core.config import load_params
from iau_core.data import load_bundle
from iau_core.recipe import model_builder
from iau_core.runtime import prepare_process
from iau_core.training import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--pool", type=int, default=1000, help="shadow-pool records (each model trains on half)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--hvp", choices=["double_backward", "finite_difference"], help="default: params.yaml's")
    args = parser.parse_args()
    params = load_params(args.params)
    threads = prepare_process(params.threads)
    bundle = load_bundle(params.data, Path(args.params).resolve().parent / params.data.root)
    device = resolve_device(params.device)
    pool = bundle.shadow_pool.take(torch.arange(min(args.pool, len(bundle.shadow_pool))))
    recipe = params.training.model_copy(update={"max_epochs": args.epochs, "patience": args.epochs,
                                                 "gr_hvp": args.hvp or params.training.gr_hvp})
    build = model_builder(params, bundle)
    print(f"{params.data.dataset} {params.model.name}, {args.count} models on {len(pool) // 2} records each, "
          f"{args.epochs} epochs, gr {recipe.gr_reading}/{recipe.gr_hvp} alpha {recipe.gr_alpha}, {threads} "
          f"thread(s), {device}\n")
    print("| mode | wall s | CPU s |\n| --- | --- | --- |")
    models = {}
    for mode in ("sequential", "ensemble"):
        wall, cpu = time.perf_counter(), time.process_time()
        models[mode] = train_reference_models(pool, build, recipe, args.count, device, 0, mode=mode)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        print(f"| {mode} | {time.perf_counter() - wall:.1f} | {time.process_time() - cpu:.1f} |", flush=True)
    diff = max((a - b).abs().max().item() for ra, rb in zip(models["sequential"], models["ensemble"], strict=True)
               for a, b in zip(ra.model.parameters(), rb.model.parameters(), strict=True))
    print(f"\nlargest weight difference between the modes: {diff:.2g}")


if __name__ == "__main__":
    main()
