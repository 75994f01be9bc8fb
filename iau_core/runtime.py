"""What every process that runs torch does first: quiet offline settings, OpenMP's wait policy, and a thread count
fixed for the whole run.

Why fixed: a different intra-op thread count gives a different float trajectory (reductions split differently), so
the same params and data would give different models, verdicts and test outcomes depending on what else runs on
the machine. The count is therefore decided once, when the run starts, from params and this process alone:
`threads` in params.yaml is a number, or `auto` = the usable cores of this process's CPU affinity (never a share
of what other processes are doing); IAU_THREADS overrides both (a Dask worker sets 1). Nothing changes it while
training, and no other process, of this checkout or another, is consulted. The count is recorded with every MLflow
run that logs params (stores/tracking.flatten: `torch_threads`).

Why OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE, set before torch loads OpenMP): torch's OpenMP
threads spin between parallel regions by default. Alone, that is faster; oversubscribed, it collapses (measured on
2 cores, 2026-12: two processes with 2 threads each, spinning, 34 s epochs against 4.9 s when they sleep). A
process cannot know at start whether a neighbour will come, so the policy must hold without knowing: with sleeping
threads two jobs side by side take no longer than the same two in sequence (`concurrent_slowdown` <= 1.05,
benchmarks/concurrency.py). The cost is speed alone (about 40% of a LeNet5 epoch alone on an idle machine; `make
run` about 5 min -> 8 min): the price of a result and a slowdown that no neighbour can change. A bounded spin
(GOMP_SPINCOUNT) is no way out: as fast as spinning alone, slower than sleeping in pairs, and only libgomp reads
it. `python -m benchmarks.concurrency --wait-policies` measures each policy alone and in pairs, interleaved
(reports/wait_policy.json); the measurements so far are in docs/timings.md ("OpenMP's wait policy"). A value you
set (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is kept, e.g. OMP_WAIT_POLICY=ACTIVE for a machine you know runs nothing
else.

Where: OpenMP reads the policy once, when torch loads it, and importing iau_core sets nothing. So an entry point
calls quiet_offline_env (or prepare_process) before anything imports torch (flows/__init__.py does, and so does a
benchmark job); a process started later inherits the setting from its parent's environment (Dask workers, pytest's
xdist workers, benchmark jobs).
"""

from __future__ import annotations

import os

# Offline hygiene for every entry point, not only make targets: no telemetry, no progress bars, no downloads.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    # Prefect's temporary server (python -m flows.unlearn) gets 20 s to start by default: too little on a busy
    # 2-core machine. Read when prefect is imported: flows/__init__.py imports iau_core before it.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}

THREADS_ENV = "IAU_THREADS"
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
WAIT_POLICY = "PASSIVE"  # see the module docstring: holds whatever runs beside this process
# Either one, set by the user, already chooses how OpenMP waits: then ours is not added.
USER_WAIT_SETTINGS = (WAIT_POLICY_ENV, "GOMP_SPINCOUNT")


def quiet_offline_env() -> None:
    """Set the offline settings and the wait policy where the user has not chosen otherwise. Call before
    importing torch (OpenMP reads its policy once, when it loads)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if not any(key in os.environ for key in USER_WAIT_SETTINGS):
        os.environ[WAIT_POLICY_ENV] = WAIT_POLICY


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's limit)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(setting: str | int = "auto") -> int:
    """The thread count for a run: IAU_THREADS, else a number from params, else (auto) the usable cores.
    Depends on this process's settings and affinity only, never on other processes."""
    forced = os.environ.get(THREADS_ENV)
    if forced:
        try:
            value = int(forced)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {forced!r}") from None
        if value < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {forced!r}")
        return value
    if setting != "auto":
        return max(1, int(setting))
    return usable_cores()


def prepare_process(setting: str | int = "auto") -> int:
    """The first call of every entry point that runs torch: offline settings, then torch's intra-op threads fixed
    to resolve_threads(setting) for the run; returns the count."""
    quiet_offline_env()
    import torch

    threads = resolve_threads(setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
