"""peak_memory_ratio: the cached IAU step's peak memory with |D| large over |D| small, each measured in a fresh
child process (python -m benchmarks.memory --size N ...), so one size's allocations never hide the other's; the
children run as many at a time as there are cores (a process's peak is its own).

The child holds D as a nightly batch does, computes D's summed gradient, then resets the kernel's high-water mark
(/proc/self/clear_refs) and runs the step on the same 100-record D_f. The step's peak memory is the high-water mark
after the step minus the resident size before it: what the step itself needs, which must not grow with |D|. The
process's whole peak (D's tensors included) is reported beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.figures import Figure, unavailable
from benchmarks.timing import spread_of
from benchmarks.workload import save_split, subset
from iau_core.data import Split
from iau_core.runtime import usable_cores

FORGET_SIZE = 100


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> None:
    """Return freed heap to the system first (else the step reuses it unseen), then VmHWM := VmRSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc
    Path("/proc/self/clear_refs").write_text("5")


def probe(params_json: str, state_path: str, train_path: str, val_path: str) -> dict:
    """In the child: the step's and the process's peak memory, in MiB."""
    import numpy as np
    import torch

    from benchmarks.science import _partition
    from benchmarks.workload import load_split
    from iau_core.config import parse_params
    from iau_core.data import DataBundle
    from iau_core.recipe import model_builder
    from iau_core.runtime import prepare_process
    from iau_core.unlearning import UnlearningTask, run_method
    from iau_core.unlearning.gradients import summed_gradient

    params = parse_params(json.loads(params_json))
    prepare_process(params.threads)
    device = torch.device("cpu")
    train, val = load_split(train_path), load_split(val_path)
    bundle = DataBundle(train, val, val, val, int(train.y.max()) + 1, tuple(train.x.shape[1:]))
    model = model_builder(params, bundle)(params.seed)
    model.load_state_dict(torch.load(state_path, weights_only=True))
    model.eval()
    cache = summed_gradient(model, bundle.train, params.unlearning.batch_size)
    ids = np.random.default_rng(0).choice(bundle.train.ids.numpy(), size=FORGET_SIZE, replace=False)
    forget, retain = _partition(bundle.train, ids)
    task = UnlearningTask(model=model, retain=retain, forget=forget, val=bundle.val,
                          build_model=model_builder(params, bundle), training=params.training,
                          unlearning=params.unlearning, device=device, seed=params.seed, summed_gradient=cache)
    _reset_peak()
    before = _status_kib("VmRSS")
    run_method("iau", task)
    peak = _status_kib("VmHWM")
    return {"train_size": len(train), "step_peak_mib": (peak - before) / 1024, "process_peak_mib": peak / 1024}


def measure(params, model, train: Split, val: Split, sizes: tuple[int, int], reps: int) -> Figure:
    """The least of `reps` children per size of the step's peak memory; the ratio large / small."""
    import torch

    if not Path("/proc/self/clear_refs").exists():
        return unavailable("peak_memory_ratio", "needs Linux's /proc/self/clear_refs to reset the peak")
    small, large = sizes
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: str(Path(tmp) / f"{name}.pt") for name in ("model", "val", small, large)}
        torch.save(model.state_dict(), files["model"])
        save_split(val, files["val"])
        for size in (small, large):
            save_split(subset(train, size), files[size])
        # A child's peak memory does not depend on what runs beside it (its threads do, and each takes its
        # share): the children run as many at a time as there are cores, which halves the figure's wall on 2.
        with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
            futures = {size: [pool.submit(_child, params.model_dump_json(), files["model"], files[size], files["val"])
                              for _ in range(reps)] for size in (small, large)}
            rows = {size: [f.result() for f in runs] for size, runs in futures.items()}
    # the least each size's step needed (as the timings' minimum: a neighbour can only add), and the spread
    step = {size: min(r["step_peak_mib"] for r in runs) for size, runs in rows.items()}
    whole = {size: min(r["process_peak_mib"] for r in runs) for size, runs in rows.items()}
    spread = {f"|D| = {size:,}": spread_of([r["step_peak_mib"] for r in runs]) for size, runs in rows.items()}
    return Figure("peak_memory_ratio", step[large] / step[small],
                  {"step_peak_mib": {str(k): v for k, v in step.items()},
                   "step_peak_runs_mib": {str(k): [r["step_peak_mib"] for r in runs] for k, runs in rows.items()},
                   "process_peak_mib": {str(k): v for k, v in whole.items()},
                   "process_peak_ratio": whole[large] / whole[small], "forget_size": FORGET_SIZE,
                   "sizes": list(sizes), "how": "child processes; VmHWM reset before the cached step"},
                  spread=spread if reps > 1 else {})


def _child(params_json: str, state: str, train: str, val: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", state, train, val], input=params_json,
                         capture_output=True, text=True, check=False, env=os.environ.copy(), timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe on {train} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="one peak-memory probe (run by benchmarks.memory.measure)")
    parser.add_argument("state", help="the model's state_dict (.pt)")
    parser.add_argument("train", help="D as a tensor file (workload.save_split)")
    parser.add_argument("val", help="the validation set as a tensor file")
    args = parser.parse_args()
    print(json.dumps(probe(sys.stdin.read(), args.state, args.train, args.val)))


if __name__ == "__main__":
    main()
