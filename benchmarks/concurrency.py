"""concurrent_slowdown: two identical pipeline jobs started together, over the same two run one after the other;
and the OpenMP wait policies behind it (`--wait-policies`).

A job is a fresh process that does what every pipeline step does first (iau_core.runtime.prepare_process: its
thread count fixed from params, every usable core under `threads: auto`, OpenMP's waiting threads asleep) and then
trains the default model with the GR recipe for a fixed number of epochs: `python -m benchmarks.concurrency DATA.pt
EPOCHS` (the records come as a tensor file: no decoding). Neither job knows of the other. "after" runs the jobs as
the pipeline runs them; "before" lets OpenMP's waiting threads spin (libgomp's default, GOMP_SPINCOUNT=300000, as
torch does by itself): context, not the figure. Sequence and together alternate (S T S T ...), so a disturbance
of the shared machine falls on both sides; each row keeps every repetition and its spread.

`python -m benchmarks.concurrency --wait-policies` measures each wait policy alone and in pairs, interleaved over
rounds, and writes reports/wait_policy.json: the cost of the policy iau_core/runtime.py chose, alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from iau_core.runtime import THREADS_ENV, USER_WAIT_SETTINGS, WAIT_POLICY, WAIT_POLICY_ENV, usable_cores

if TYPE_CHECKING:  # nothing at the top loads torch: a job sets OpenMP's wait policy first (job())
    from benchmarks.figures import Figure
    from iau_core.data import Split

LIBGOMP_DEFAULT_SPIN = "300000"  # libgomp's spin count when no policy is set: what torch does by itself
# name -> environment: how the OpenMP threads of a job wait between parallel regions
POLICIES: dict[str, dict[str, str]] = {
    "passive": {WAIT_POLICY_ENV: "PASSIVE"},
    "spin_1e3": {"GOMP_SPINCOUNT": "1000"},
    "spin_1e4": {"GOMP_SPINCOUNT": "10000"},
    "spin_default": {"GOMP_SPINCOUNT": LIBGOMP_DEFAULT_SPIN},
}
CHOSEN = "passive" if WAIT_POLICY == "PASSIVE" else WAIT_POLICY


def _start(data: str, epochs: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.concurrency", data, str(epochs)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(*procs: subprocess.Popen) -> list[dict]:
    """Each job's own report: its training seconds and thread count."""
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"pipeline job failed ({p.returncode}):\n{err[-3000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def _in_sequence(data: str, epochs: int, env: dict) -> tuple[float, list[dict]]:
    start, reports = time.perf_counter(), []
    for _ in range(2):
        reports += _wait(_start(data, epochs, env))
    return time.perf_counter() - start, reports


def _together(data: str, epochs: int, env: dict) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    reports = _wait(_start(data, epochs, env), _start(data, epochs, env))
    return time.perf_counter() - start, reports


def _spread(values: list[float]) -> float:
    """(max - min) / min: how far the repetitions disagree."""
    return (max(values) - min(values)) / min(values) if values and min(values) > 0 else float("nan")


def _job_env(policy: dict[str, str]) -> dict[str, str]:
    """The benchmark's environment without any thread or wait setting of the caller, plus `policy`."""
    dropped = (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", *USER_WAIT_SETTINGS)
    return {**{k: v for k, v in os.environ.items() if k not in dropped}, **policy}


def _pair_rows(data: str, epochs: int, reps: int, env: dict) -> dict:
    pairs, alone, paired = [], [], []
    for _ in range(reps):  # S T S T ...: a disturbance falls on both sides
        sequence, reports = _in_sequence(data, epochs, env)
        alone += [r["train_seconds"] for r in reports]
        together, reports = _together(data, epochs, env)
        paired += [r["train_seconds"] for r in reports]
        pairs.append((sequence, together))
    ratios = [t / s for s, t in pairs]
    return {"sequence_seconds": statistics.median(s for s, _ in pairs),
            "together_seconds": statistics.median(t for _, t in pairs),
            "slowdown": statistics.median(ratios), "slowdown_runs": ratios, "slowdown_min": min(ratios),
            "slowdown_spread": _spread(ratios), "alone_train_seconds": alone, "paired_train_seconds": paired}


def measure(train: Split, epochs: int, reps: int) -> Figure:
    from benchmarks.figures import Figure
    from benchmarks.workload import save_split

    cores, size = usable_cores(), len(train)
    with tempfile.TemporaryDirectory() as folder:
        data = str(Path(folder) / "data.pt")
        save_split(train, data)
        after = _pair_rows(data, epochs, reps, _job_env({}))  # the runtime's own choice, as the pipeline runs
        before = _pair_rows(data, epochs, 1, _job_env(POLICIES["spin_default"]))  # context: one repetition
    # what sleeping costs a job alone: its training seconds (no process start-up), least of each side
    cost = min(after["alone_train_seconds"]) / min(before["alone_train_seconds"])
    return Figure("concurrent_slowdown", after["slowdown"],
                  {"after": after, "before": before, "cores": cores, "wait_cost_alone": cost,
                   "job": f"a fresh process training LeNet5 with GR on {size} records for {epochs} epochs, "
                   f"threads: auto ({cores} threads each)",
                   "threads_before": "every core per process, OpenMP's waiting threads spin (GOMP_SPINCOUNT="
                   f"{LIBGOMP_DEFAULT_SPIN}, its default)",
                   "threads_after": f"every core per process, {WAIT_POLICY_ENV}={WAIT_POLICY} (iau_core/runtime.py)"})


def wait_policies(train: Split, epochs: int, rounds: int, out: Path, names: tuple[str, ...] = tuple(POLICIES)) -> dict:
    """Each policy alone (two jobs in sequence) and paired (two together), interleaved: every round visits every
    policy once, so the machine's other load falls on all of them alike. `out` is rewritten after every round,
    so a long run that is stopped keeps its finished rounds."""
    from benchmarks.workload import save_split

    runs: dict[str, list[dict]] = {name: [] for name in (CHOSEN, *[n for n in names if n != CHOSEN])}
    result: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        data = str(Path(folder) / "data.pt")
        save_split(train, data)
        for done in range(1, rounds + 1):
            for name in runs:
                env = _job_env(POLICIES[name])
                sequence, alone = _in_sequence(data, epochs, env)
                together, paired = _together(data, epochs, env)
                runs[name].append({"sequence_seconds": sequence, "together_seconds": together,
                                   "alone_train_seconds": [r["train_seconds"] for r in alone],
                                   "paired_train_seconds": [r["train_seconds"] for r in paired],
                                   "threads": alone[0]["threads"]})
            result = {"chosen": CHOSEN, "cores": usable_cores(), "records": len(train), "epochs": epochs,
                      "rounds": done, "machine_note": "timed on whatever else the machine runs: compare rows of "
                      "one file only", "rows": _policy_rows(runs)}
            out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _policy_rows(runs: dict[str, list[dict]]) -> dict:
    rows = {}
    for name, reps in runs.items():
        alone = [s for r in reps for s in r["alone_train_seconds"]]
        paired = [max(r["paired_train_seconds"]) for r in reps]  # a pair is done when its slower job is
        slowdowns = [r["together_seconds"] / r["sequence_seconds"] for r in reps]
        rows[name] = {"env": POLICIES[name], "alone_train_min": min(alone), "alone_train_median":
                      statistics.median(alone), "alone_spread": _spread(alone), "paired_train_min": min(paired),
                      "paired_train_median": statistics.median(paired), "paired_spread": _spread(paired),
                      "slowdown_median": statistics.median(slowdowns), "slowdown_max": max(slowdowns),
                      "runs": reps}
    chosen = rows[CHOSEN]["alone_train_min"]
    for row in rows.values():
        row["alone_vs_chosen"] = row["alone_train_min"] / chosen
    return rows


def job(data: str, epochs: int) -> None:
    """One pipeline job (in a child process): the first 9/10 of the records train, the rest validate. Prints
    {"train_seconds", "threads"} as its last line."""
    from iau_core.runtime import prepare_process, quiet_offline_env

    quiet_offline_env()  # before anything below loads torch: OpenMP reads its wait policy once
    import torch

    from benchmarks import PROJECT_ROOT
    from benchmarks.workload import load_split
    from iau_core.config import load_params
    from iau_core.data import DataBundle
    from iau_core.recipe import model_builder
    from iau_core.training import train_model

    params = load_params(PROJECT_ROOT / "params.yaml")
    threads = prepare_process(params.threads)

    records = load_split(data)
    cut = len(records) * 9 // 10
    train, val = records.take(torch.arange(cut)), records.take(torch.arange(cut, len(records)))
    bundle = DataBundle(train, val, val, val, int(records.y.max()) + 1, tuple(records.x.shape[1:]))
    training = params.training.model_copy(update={"max_epochs": epochs, "patience": epochs})
    model = model_builder(params, bundle)(params.seed)
    report = train_model(model, train, val, training, torch.device("cpu"), params.seed)
    print(json.dumps({"train_seconds": report.seconds, "threads": threads}))


def main() -> None:
    parser = argparse.ArgumentParser(description="one pipeline job (run by measure), or --wait-policies")
    parser.add_argument("data", nargs="?", help="the job's records as a tensor file (workload.save_split)")
    parser.add_argument("epochs", type=int, nargs="?", default=2)
    parser.add_argument("--wait-policies", action="store_true", help="measure each OpenMP wait policy alone and "
                        "in pairs; write --out")
    parser.add_argument("--records", type=int, default=2000, help="--wait-policies: Fashion-MNIST records a job")
    parser.add_argument("--epochs", dest="policy_epochs", type=int, default=2, help="--wait-policies: epochs a job")
    parser.add_argument("--rounds", type=int, default=3, help="--wait-policies: interleaved rounds")
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"--wait-policies: of {', '.join(POLICIES)}")
    parser.add_argument("--out", default="reports/wait_policy.json")
    args = parser.parse_args()
    if not args.wait_policies:
        job(args.data, args.epochs)
        return
    from benchmarks.workload import fashion_mnist_bundle, subset

    train = subset(fashion_mnist_bundle(args.records, 0, 0, 0, _cpu()).train, args.records)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = wait_policies(train, args.policy_epochs, args.rounds, Path(args.out), tuple(args.policies.split(",")))
    for name, row in result["rows"].items():
        print(f"{name:13s} alone {row['alone_train_min']:.2f} s (median {row['alone_train_median']:.2f}, spread "
              f"{row['alone_spread']:.0%}), paired {row['paired_train_min']:.2f} s (median "
              f"{row['paired_train_median']:.2f}, spread {row['paired_spread']:.0%}), together/sequence "
              f"{row['slowdown_median']:.2f} (max {row['slowdown_max']:.2f}), alone vs {CHOSEN} "
              f"{row['alone_vs_chosen']:.2f}")


def _cpu():
    import torch

    return torch.device("cpu")


if __name__ == "__main__":
    main()
