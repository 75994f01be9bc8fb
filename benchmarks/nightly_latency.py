"""Deletion latency against batch size: the nightly batch's unlearning step with D's summed gradient cached
(a pass over D_f only), without it (a pass over D_r as well), and retraining on D_r, measured in one run on the
same champion, data and machine. Prints seconds and ratios; asserts nothing (speed targets are read, not timed
in tests).

    .venv/bin/python -m benchmarks.nightly_latency [--sizes 10 100 1000] [--set data.train_size=...]

"step" is the whole IAU method as a batch runs it (gradient direction + the eta rule's scan on the validation
set); "direction" is the gradient part alone, the part the cache changes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from benchmarks import PROJECT_ROOT
from iau_core.config import load_params, parse_overrides
from iau_core.data import load_bundle
from iau_core.recipe import model_builder, train_original
from iau_core.training import resolve_device, synchronize
from iau_core.unlearning import UnlearningTask, run_method
from iau_core.unlearning.gradients import iau_direction, summed_gradient


def clock(device: torch.device, fn, *args):
    """(seconds, fn(*args)) with the device synchronized before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn(*args)
    synchronize(device)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-retrain", action="store_true", help="skip the retraining column (minutes each)")
    args = parser.parse_args()
    params = load_params(PROJECT_ROOT / "params.yaml", parse_overrides(args.overrides))
    device = resolve_device(params.device)
    bundle = load_bundle(params.data, PROJECT_ROOT / params.data.root)
    print(f"champion: {params.model.name} on {len(bundle.train)} records of {params.data.dataset.name} "
          f"(GR {params.training.gr_reading}, alpha {params.training.gr_alpha}), device {device}, "
          f"{torch.get_num_threads()} threads")
    champion, report = train_original(params, bundle, device)
    champion.eval()
    print(f"trained in {report.seconds:.1f} s; caching D's summed gradient ...")
    train = bundle.train.to(device)
    cache_seconds, cache = clock(device, summed_gradient, champion, train, params.unlearning.batch_size)
    print(f"summed gradient over D: {cache_seconds:.2f} s (once per champion, after promotion)\n")
    rows = []
    rng = np.random.default_rng(0)
    for size in args.sizes:
        ids = rng.choice(bundle.train.ids.numpy(), size=size, replace=False)
        forget, retain = bundle.train.partition(ids)
        task = UnlearningTask(model=champion, retain=retain.to(device), forget=forget.to(device),
                              val=bundle.val.to(device), build_model=model_builder(params, bundle),
                              training=params.training, unlearning=params.unlearning, device=device,
                              seed=params.seed)
        cached_task = replace(task, summed_gradient=cache)
        args_ = (champion, task.retain, task.forget, params.unlearning.batch_size, params.unlearning.reduction)
        row = {"requests": size,
               "direction cached": clock(device, iau_direction, *args_, cache)[0],
               "direction uncached": clock(device, iau_direction, *args_)[0],
               "step cached": run_method("iau", cached_task).seconds,
               "step uncached": run_method("iau", task).seconds}
        if not args.no_retrain:
            row["retrain"] = run_method("retrain", task).seconds
        rows.append(row)
        print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    print("\n| requests | direction cached | direction uncached | step cached | step uncached | retrain "
          "| uncached / cached (step) | retrain / cached (step) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        retrain = r.get("retrain", float("nan"))
        print(f"| {r['requests']} | {r['direction cached']:.3f} | {r['direction uncached']:.3f} | "
              f"{r['step cached']:.3f} | {r['step uncached']:.3f} | {retrain:.1f} | "
              f"{r['step uncached'] / r['step cached']:.1f}x | {retrain / r['step cached']:.0f}x |")


if __name__ == "__main__":
    main()
