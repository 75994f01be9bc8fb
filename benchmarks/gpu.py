"""The GPU rows: a CIFAR-shaped case (3x32x32, 10 classes, ResNet18 of iau_core/models.py) on synthetic learnable
data (each class a fixed random smooth pattern plus noise; CIFAR itself is not shipped), measured in four variants:
fp32, bf16 autocast, channels_last, and both. Per variant: one GR training epoch, the cached IAU step, retraining
with the same (shortened) recipe, and their ratio. Without a CUDA device every row says so.

The variants are measurement options here (an autocast context and a memory format around the same calls), not
params of the pipeline.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.science import _partition
from benchmarks.timing import repeat
from iau_core.config import Params
from iau_core.data import DataBundle, Split
from iau_core.recipe import model_builder
from iau_core.training import train_model
from iau_core.unlearning import UnlearningTask, run_method
from iau_core.unlearning.gradients import summed_gradient

NO_CUDA = "skipped: no CUDA device"
VARIANTS = {"fp32": (False, False), "bf16_autocast": (True, False), "channels_last": (False, True),
            "bf16_autocast+channels_last": (True, True)}


@dataclass(frozen=True)
class CifarCase:
    train_size: int = 16_000
    val_size: int = 2_000
    forget_size: int = 200
    batch_size: int = 256  # the GPU recipe's batch: 64 leaves an H200 idle between kernel launches
    epochs: int = 5  # retraining's fixed length here (the full recipe would take minutes per variant)
    reps: int = 3


TINY_CASE = CifarCase(train_size=64, val_size=32, forget_size=8, batch_size=32, epochs=1, reps=1)


def synthetic_cifar(n: int, seed: int, device: torch.device) -> Split:
    """(n, 3, 32, 32) records of 10 learnable classes: a smooth class pattern (upsampled 8x8 noise) plus
    per-record noise, normalized to zero mean and unit variance."""
    gen = torch.Generator().manual_seed(1234)
    patterns = F.interpolate(torch.randn(10, 3, 8, 8, generator=gen), size=32, mode="bilinear", align_corners=False)
    rec = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=rec)
    x = patterns[y] + 1.5 * torch.randn(n, 3, 32, 32, generator=rec)
    x = (x - x.mean()) / x.std()
    ids = torch.arange(n, dtype=torch.int64) + seed * 1_000_000
    return Split(x.to(device), y.to(device), ids.to(device))


def measure(params: Params, device: torch.device, case: CifarCase = CifarCase(), on_cpu: bool = False) -> dict:
    """The rows on a CUDA device; on the CPU only when asked (`on_cpu`: to check the code path, not to time)."""
    if device.type != "cuda" and not on_cpu:
        return {"status": NO_CUDA, "rows": {name: NO_CUDA for name in VARIANTS}}
    return {"status": "measured", **run_case(params, device, case)}


def run_case(params: Params, device: torch.device, case: CifarCase) -> dict:
    """Every variant on the same data, models and forget set; no decoding in any timed path."""
    recipe = {"batch_size": case.batch_size, "max_epochs": case.epochs, "patience": case.epochs, "augment": None}
    if "gr_hvp" in type(params.training).model_fields:  # the finite difference is for models without batch norm
        recipe["gr_hvp"] = "double_backward"
    params = params.model_copy(update={"model": _resnet18(), "training": params.training.model_copy(update=recipe)})
    train, val = synthetic_cifar(case.train_size, 0, device), synthetic_cifar(case.val_size, 1, device)
    bundle = DataBundle(train, val, val, val, 10, (3, 32, 32))
    forget_ids = np.arange(case.forget_size)  # synthetic ids are positions for seed 0
    rows = {}
    for name, (bf16, channels_last) in VARIANTS.items():
        rows[name] = _variant(params, bundle, forget_ids, bf16, channels_last, device, case)
    fp32 = rows["fp32"]
    for row in rows.values():
        row["epoch_speedup_vs_fp32"] = fp32["epoch_seconds"] / row["epoch_seconds"]
    return {"device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
            "case": {"train_size": case.train_size, "val_size": case.val_size, "forget_size": case.forget_size,
                     "batch_size": case.batch_size, "retrain_epochs": case.epochs, "model": "resnet18",
                     "data": "synthetic learnable 3x32x32, 10 classes"}, "rows": rows}


def _resnet18():
    from iau_core.config.models import ResNet18Params

    return ResNet18Params(name="resnet18")


def _variant(params: Params, bundle: DataBundle, forget_ids: np.ndarray, bf16: bool, channels_last: bool,
             device: torch.device, case: CifarCase) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    train = replace(bundle.train, x=bundle.train.x.contiguous(memory_format=fmt))
    val = replace(bundle.val, x=bundle.val.x.contiguous(memory_format=fmt))
    build = model_builder(params, bundle)

    def fresh(seed: int):
        return build(seed).to(device, memory_format=fmt)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    one_epoch = params.training.model_copy(update={"max_epochs": 1, "patience": 1})
    with autocast():
        epoch = repeat(device, case.reps, lambda: train_model(fresh(params.seed), train, val, one_epoch, device,
                                                              params.seed))
        model = fresh(params.seed)
        train_model(model, train, val, params.training, device, params.seed)  # the deployed model (untimed)
        model.eval()
        cache = summed_gradient(model, train, params.unlearning.batch_size, val)
        forget, retain = _partition(train, forget_ids)
        task = UnlearningTask(model=model, retain=retain, forget=forget, val=val,
                              build_model=lambda seed: fresh(seed), training=params.training,
                              unlearning=params.unlearning, device=device, seed=params.seed)
        step = repeat(device, case.reps, lambda: run_method("iau", replace(task, summed_gradient=cache)))
        uncached = repeat(device, case.reps, lambda: run_method("iau", task))
        retrain = repeat(device, case.reps, lambda: run_method("retrain", task))
    return {"epoch_seconds": epoch.median, "step_cached_seconds": step.median,
            "step_uncached_seconds": uncached.median, "retrain_seconds": retrain.median,
            "speedup_vs_retrain": retrain.median / step.median,
            "eta_rule_candidates": step.result.choices.get("eta_rule.candidates")}
