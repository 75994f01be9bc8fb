"""make bench: every speed figure of issue 15 as a ratio measured in this run on this device, against its target.

    python -m benchmarks            # quick: |D| = 8,000 (params.yaml's default), 11 min on 2 idle cores (target: 15)
    python -m benchmarks --full     # |D| = 60,000 (Fashion-MNIST's whole training split), scaling with retraining
    python -m benchmarks --gpu-only # the CIFAR-shaped GPU rows alone (< 8 min on one H200); = --only gpu
    python -m benchmarks --full --only headline  # the headline figures at |D| = 60,000 (12-25 min on 2 cores)
    python -m benchmarks --only make-run         # make run SEEDS="0 1" under local and dask (about 25 min)

Each `--only` part is added to the bench.json already there, whose other figures it leaves alone; a later quick
run keeps the parts it does not measure itself (the 60k headline, the make run walls), each with its own date.

Writes reports/bench.json, prints the table and regenerates docs/performance.md. `--tiny` is for tests: every code
path at toy sizes, numbers meaningless, nothing written outside --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmarks import PROJECT_ROOT, batch_cost, concurrency, gpu, memory, orchestration, report, science, training_cost
from benchmarks.cores import ThreadChoice, bench_threads
from benchmarks.figures import KEYS, unavailable
from benchmarks.modes import FULL, QUICK, TINY, Mode
from benchmarks.workload import fashion_mnist_bundle, recipe, subset
from iau_core.config import Params, load_params, parse_overrides
from iau_core.runtime import prepare_process, usable_cores
from iau_core.training import resolve_device

BENCH_JSON = PROJECT_ROOT / "reports" / "bench.json"
PERFORMANCE_MD = PROJECT_ROOT / "docs" / "performance.md"
PARTS = ("gpu", "headline", "make-run")  # what `--only` can measure on its own


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or "unknown"


def _meta(mode: Mode, only: str, device: torch.device, threads: ThreadChoice, params: Params, start: float) -> dict:
    """What the run was (main() adds its command line): size, device, threads, versions, params, commit, wall time."""
    return {
        "mode": mode.name + (f" ({only})" if only else ""), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": threads.threads, "threads_reason": threads.reason, "busy_cores_at_start": threads.busy_cores,
        "cores": usable_cores(), "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": _commit(),
        "sizes": {"train_size": mode.train_size, "val_size": mode.val_size, "test_size": mode.test_size,
                  "shadow_size": mode.shadow_size, "scaling": list(mode.scaling_sizes),
                  "retrain_scaling": list(mode.retrain_scaling_sizes), "forget": list(mode.forget_sizes),
                  "batch_deletions": list(mode.batch_deletions), "batch_reps": mode.batch_reps,
                  "memory": list(mode.memory_sizes), "epoch": mode.epoch_size, "reference_pool": mode.reference_pool,
                  "job": [mode.job_size, mode.job_epochs]},
        "reps": mode.reps, "process_reps": mode.process_reps, "model": params.model.name,
        "params": json.loads(params.model_dump_json()), "seconds": time.perf_counter() - start,
    }


def run(mode: Mode, overrides: dict, only: str | None = None, cifar_on_cpu: bool = False,
        progress=None) -> dict:
    """The whole benchmark at this size, or one part of it (`only`: one of PARTS)."""
    start = time.perf_counter()
    progress = progress or (lambda line: print(f"[bench {time.perf_counter() - start:6.1f} s] {line}", flush=True))
    params = recipe(load_params(PROJECT_ROOT / "params.yaml", overrides), mode.max_epochs)
    threads = bench_threads(params.threads)  # the cores no neighbour keeps busy (benchmarks/cores.py)
    prepare_process(threads.threads)
    progress(f"timing on {threads.threads} torch thread(s): {threads.reason}")
    device = resolve_device(params.device)
    cifar = gpu.TINY_CASE if mode is TINY else gpu.CifarCase()
    result: dict = {}
    if only == "make-run":
        progress('make run SEEDS="0 1" under execution local, then dask, each on a fresh MLflow store ...')
        walls = orchestration.make_run_walls(params, enabled=True)
        return {"make_run": walls, "meta": _meta(mode, "make run walls only", device, threads, params, start)}
    if only != "gpu":
        progress(f"{mode.name}: training the deployed model on |D| = {mode.train_size:,} ...")
        trained = science.prepare(params, mode, device)
        progress(f"the IAU step against retraining ({mode.reps} interleaved repetitions), the quality gaps, the "
                 "limit ...")
        headline = science.headline(trained, mode, device)
        figures = list(headline.figures)
        progress(f"nightly batches end to end (step, gate, registration, forgetting, refresh) of "
                 f"{', '.join(f'{k:,}' for k in mode.batch_deletions)} deletions ...")
        figures.append(batch_cost.measure(trained, headline, mode, device))
        if only == "headline":  # the speed targets are stated at 60k: their figures alone, without the rest
            return {f.key: f.as_json() for f in figures} | {"meta": _meta(mode, "headline only", device, threads,
                                                                           params, start)}
        progress("scaling rows ...")
        result["scaling"] = science.scaling(trained, mode, {len(trained.bundle.train): headline.retrain}, device)
        progress("GR epochs ...")
        figures.append(training_cost.gr_epoch_overhead(params, trained.bundle, mode, device))
        progress("reference models ...")
        figures.append(training_cost.reference_models_speedup(params, trained.bundle, mode, device))
        if mode.processes:
            progress("two pipeline jobs at once ...")
            job_data = subset(trained.bundle.train, min(mode.job_size, mode.train_size))
            figures.append(concurrency.measure(job_data, mode.job_epochs, mode.process_reps))
            progress("peak memory in child processes ...")
            large = fashion_mnist_bundle(max(mode.memory_sizes), 0, 0, 0, torch.device("cpu")).train
            figures.append(memory.measure(params, trained.model, large, trained.bundle.val, mode.memory_sizes,
                                          mode.process_reps))
        else:
            figures += [unavailable(key, f"skipped in --{mode.name} (starts processes)")
                        for key in ("concurrent_slowdown", "peak_memory_ratio")]
        if mode.processes:
            progress(f"iau nightly of {mode.nightly_requests} requests through a deployment on a warm worker ...")
        figures.append(orchestration.orchestration_overhead(mode.nightly_requests, mode.process_reps,
                                                            enabled=mode.processes))
        result |= {f.key: f.as_json() for f in figures}
        result["make_run"] = orchestration.make_run_walls(params, mode.make_run)
    progress("GPU rows ...")
    result["gpu"] = gpu.measure(params, device, cifar, on_cpu=cifar_on_cpu)
    result["meta"] = _meta(mode, "GPU rows only" if only == "gpu" else "", device, threads, params, start)
    return result


def merge(result: dict, earlier: dict | None, mode: Mode, only: str | None) -> dict:
    """bench.json after this run: a part joins the figures already there; a whole run replaces them but keeps the
    parts it does not measure itself (measured by an earlier `--only`, each with its own meta)."""
    earlier = earlier or {}
    if only == "gpu":
        return {**earlier, "gpu": result["gpu"], "meta_gpu": result["meta"]} if earlier else result
    if only == "headline":  # the run before stays beside it: the targets ask for two runs that agree
        key = f"headline_{mode.name}"
        before = {f"{key}_before": earlier[key]} if key in earlier else {}
        return {**earlier, **before, key: result}
    if only == "make-run":
        return {**earlier, "make_run": {**result["make_run"], "meta": result["meta"]}}
    if mode is QUICK:
        for key in (report.FULL_HEADLINE, report.FULL_HEADLINE + "_before"):
            if key in earlier:
                result[key] = earlier[key]
        if earlier.get("make_run", {}).get("status") == "measured":
            result["make_run"] = earlier["make_run"]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="|D| = 60,000 and retraining in every scaling row")
    size.add_argument("--tiny", action="store_true", help="toy sizes for tests; numbers meaningless")
    parser.add_argument("--only", choices=PARTS, default=None,
                        help="measure one part, added to the bench.json already there: gpu (the CIFAR-shaped rows), "
                             "headline (batch_cost_vs_retrain, speedup_vs_retrain, iau_vs_limit, eta_rule_passes at "
                             "this size; with --full the targets' |D| = 60,000), make-run (make run SEEDS=\"0 1\" "
                             "under local and dask)")
    parser.add_argument("--gpu-only", dest="only", action="store_const", const="gpu", help="the same as --only gpu")
    parser.add_argument("--cifar-on-cpu", action="store_true", help="run the GPU rows on the CPU (a code check)")
    parser.add_argument("--out", type=Path, default=BENCH_JSON, help=f"bench.json (default {BENCH_JSON})")
    parser.add_argument("--doc", type=Path, default=None,
                        help=f"the generated page (default {PERFORMANCE_MD}; --tiny writes none unless given)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    mode = FULL if args.full else TINY if args.tiny else QUICK
    measured = run(mode, parse_overrides(args.overrides), args.only, args.cifar_on_cpu)
    given = sys.argv[1:] if argv is None else argv
    measured["meta"]["command"] = " ".join(["python -m benchmarks", *map(shlex.quote, given)])
    result = merge(measured, json.loads(args.out.read_text()) if args.out.exists() else None, mode, args.only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    if args.only == "gpu":
        print(json.dumps(result["gpu"], indent=2))
    if args.only == "headline":
        print(report.headline_table(result[f"headline_{mode.name}"]))
    if args.only == "make-run":
        print(json.dumps(result["make_run"], indent=2))
    complete = all(k in result for k in KEYS)
    if complete:
        print(report.table(result))
    doc = args.doc or (None if args.tiny else PERFORMANCE_MD)
    if doc is not None and complete:
        doc.write_text(report.markdown(result))
        print(f"wrote {doc}")
    print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
