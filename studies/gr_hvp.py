"""What GR's Hessian-vector product costs and how close the finite difference comes (training.gr_hvp).

For each GR reading, one epoch of the default model on the default data, timed in CPU seconds
(the least of 3; with one thread that is the work, whoever else shares the cores): plain cross-entropy, GR with the
double backward, GR with the finite difference. Then, on a model trained one plain epoch, the relative error of
the finite-difference GR gradient against the double backward's on `--error-batches` batches (of the GR term
alone, the part the finite difference approximates).

    IAU_THREADS=1 .venv/bin/python -m studies.gr_hvp [--records 2000] [--error-batches 40] > out.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from iau_core.config import load_params
from iau_core.data import load_bundle
from iau_core.recipe import model_builder
from iau_core.runtime import prepare_process
from iau_core.training import batches, gr_backward, resolve_device, train_model

REPEATS = 3


def epoch_seconds(params, bundle, train, device, **changes) -> float:
    recipe = params.training.model_copy(update={"max_epochs": 1, "patience": 1, **changes})
    times = []
    for _ in range(REPEATS):  # the least of a few: other processes share the cores
        model = model_builder(params, bundle)(params.seed)
        start = time.process_time()  # CPU seconds: the cores are shared, wall time measures the neighbours
        train_model(model, train, bundle.val.take(torch.arange(1)), recipe, device, params.seed)
        times.append(time.process_time() - start)
    return min(times)


def gr_term_errors(model, train, batch_size, alpha, reading, count) -> np.ndarray:
    params = [p for p in model.parameters() if p.requires_grad]

    def grad_of(hvp: str, a: float, x, y) -> torch.Tensor:
        for p in params:
            p.grad = None
        gr_backward(model, x, y, a, reading, hvp)
        return torch.cat([p.grad.flatten() for p in params])

    errors = []
    for i, idx in enumerate(batches(len(train), batch_size, torch.Generator().manual_seed(0))):
        if i == count:
            break
        x, y = train.x[idx], train.y[idx]
        plain = grad_of("double_backward", 0.0, x, y)
        exact = grad_of("double_backward", alpha, x, y) - plain
        approx = grad_of("finite_difference", alpha, x, y) - plain
        errors.append(((approx - exact).norm() / exact.norm()).item())
    return np.array(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--records", type=int, default=2000, help="records of D per timed epoch")
    parser.add_argument("--error-batches", type=int, default=40)
    args = parser.parse_args()
    params = load_params(args.params)
    threads = prepare_process(params.threads)
    bundle = load_bundle(params.data, Path(args.params).resolve().parent / params.data.root)
    device = resolve_device(params.device)
    train = bundle.train.take(torch.arange(min(args.records, len(bundle.train))))
    alpha = params.training.gr_alpha
    print(f"{params.data.dataset} {params.model.name}, {len(train)} records, batch {params.training.batch_size}, "
          f"alpha {alpha}, {threads} thread(s), {device}\n")
    print("| reading | plain CPU s | double backward CPU s (x plain) | finite difference CPU s (x plain) | "
          "FD error median | p90 | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    epoch_seconds(params, bundle, train, device, gr_alpha=0.0)  # warm-up: first calls pay for setup
    plain = epoch_seconds(params, bundle, train, device, gr_alpha=0.0)
    warm = model_builder(params, bundle)(params.seed)
    train_model(warm, train, bundle.val, params.training.model_copy(update={"max_epochs": 1, "gr_alpha": 0.0}),
                device, params.seed)
    for reading in ("batch", "per_sample"):
        db = epoch_seconds(params, bundle, train, device, gr_reading=reading, gr_hvp="double_backward")
        fd = epoch_seconds(params, bundle, train, device, gr_reading=reading, gr_hvp="finite_difference")
        err = gr_term_errors(warm, train, params.training.batch_size, alpha, reading, args.error_batches)
        print(f"| {reading} | {plain:.2f} | {db:.2f} ({db / plain:.2f}x) | {fd:.2f} ({fd / plain:.2f}x) | "
              f"{np.median(err):.2g} | {np.percentile(err, 90):.2g} | {err.max():.2g} |", flush=True)


if __name__ == "__main__":
    main()
