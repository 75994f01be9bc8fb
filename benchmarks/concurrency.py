"""concurrent_slowdown: two identical pipeline jobs started together, over the same two run one after the other.

A job is a fresh process that does what every pipeline step does first (iau_core.runtime.prepare_process, its
share of the cores) and then trains the default model with the GR recipe for a fixed number of epochs:
`python -m benchmarks.concurrency DATA.pt EPOCHS` (the records come as a tensor file: no decoding). "after" runs
the jobs as the pipeline runs them (threads: auto); "before" gives each process every core (IAU_THREADS = cores),
as torch does by itself (measured once: the comparison, not the figure). The jobs register in a thread registry
of their own, so only they count as peers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.figures import Figure
from benchmarks.timing import median_of
from benchmarks.workload import save_split
from iau_core.data import Split
from iau_core.runtime import REGISTRY_ENV, THREADS_ENV, usable_cores


def _start(data: str, epochs: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.concurrency", data, str(epochs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(*procs: subprocess.Popen) -> None:
    for p in procs:
        _, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"pipeline job failed ({p.returncode}):\n{err[-3000:]}")


def _in_sequence(data: str, epochs: int, env: dict) -> float:
    start = time.perf_counter()
    for _ in range(2):
        _wait(_start(data, epochs, env))
    return time.perf_counter() - start


def _together(data: str, epochs: int, env: dict) -> float:
    start = time.perf_counter()
    _wait(_start(data, epochs, env), _start(data, epochs, env))
    return time.perf_counter() - start


def measure(train: Split, epochs: int, reps: int) -> Figure:
    cores, size = usable_cores(), len(train)
    rows = {}
    with tempfile.TemporaryDirectory() as registry:
        data = str(Path(registry) / "data.pt")
        save_split(train, data)
        base = {k: v for k, v in os.environ.items() if k not in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        base[REGISTRY_ENV] = registry
        pairs = [(_in_sequence(data, epochs, base), _together(data, epochs, base)) for _ in range(reps)]
        sequence = median_of([s for s, _ in pairs])
        rows["after"] = {"sequence_seconds": sequence, "together_seconds": median_of([t for _, t in pairs]),
                         "slowdown": median_of([t / s for s, t in pairs])}
        # "before" is context, not the figure: one run together, each process taking every core, against the same
        # sequence (a job alone takes every core under both settings, so its sequence is not run again).
        together = _together(data, epochs, {**base, THREADS_ENV: str(cores)})
        rows["before"] = {"sequence_seconds": sequence, "together_seconds": together, "slowdown": together / sequence}
    return Figure("concurrent_slowdown", rows["after"]["slowdown"],
                  {**rows, "cores": cores, "job": f"a fresh process training LeNet5 with GR on {size} records for "
                   f"{epochs} epochs", "threads_before": f"each process takes every core ({THREADS_ENV}={cores})",
                   "threads_after": "threads: auto (each process its share)"})


def job(data: str, epochs: int) -> None:
    """One pipeline job (in a child process): the first 9/10 of the records train, the rest validate."""
    import torch

    from benchmarks.workload import load_split
    from iau_core.config import load_params
    from iau_core.data import DataBundle
    from iau_core.recipe import model_builder
    from iau_core.runtime import prepare_process, rebalance_threads
    from iau_core.training import train_model
    from stores.project import PROJECT_ROOT

    params = load_params(PROJECT_ROOT / "params.yaml")
    prepare_process(params.threads)
    device = torch.device("cpu")
    records = load_split(data)
    cut = len(records) * 9 // 10
    train, val = records.take(torch.arange(cut)), records.take(torch.arange(cut, len(records)))
    bundle = DataBundle(train, val, val, val, int(records.y.max()) + 1, tuple(records.x.shape[1:]))
    training = params.training.model_copy(update={"max_epochs": epochs, "patience": epochs})
    model = model_builder(params, bundle)(params.seed)
    # Each epoch boundary re-takes the process's share, as the pipeline's training loops do.
    train_model(model, train, val, training, device, params.seed, lambda _: rebalance_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description="one pipeline job (run by benchmarks.concurrency.measure)")
    parser.add_argument("data", help="the job's records as a tensor file (workload.save_split)")
    parser.add_argument("epochs", type=int)
    args = parser.parse_args()
    job(args.data, args.epochs)


if __name__ == "__main__":
    main()
