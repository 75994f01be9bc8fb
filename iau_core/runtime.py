"""What every process that runs torch does first: quiet offline settings, and its share of the cores.

Why a share: torch starts one compute thread per core. Two such processes on one machine oversubscribe it, and
OpenMP's busy-waiting threads then fight for the cores (measured on 2 cores: a 1.4 s epoch became 85 s). So each
process registers itself in a small folder of pid files and takes cores // (live registered processes) threads,
re-checked at epoch boundaries (`rebalance_threads`). OpenMP is also told to sleep rather than spin while it
waits, so the moments before a rebalance cost time-sharing, not a collapse.

`threads` in params.yaml: `auto` (the share above) or a number; IAU_THREADS overrides both (a Dask worker sets 1).
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

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
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # Must be set before torch's OpenMP runtime starts: waiting threads sleep instead of spinning.
    "OMP_WAIT_POLICY": "PASSIVE",
}

THREADS_ENV = "IAU_THREADS"
REGISTRY_ENV = "IAU_THREAD_REGISTRY"  # a folder of pid files; tests and benchmarks may point it elsewhere

_setting: str | int = "auto"
_registered: Path | None = None


def quiet_offline_env() -> None:
    """Set the offline settings where the user has not chosen otherwise. Call before importing torch."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _registry() -> Path:
    folder = Path(os.environ.get(REGISTRY_ENV) or Path(tempfile.gettempdir()) / f"iau-threads-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def live_peers() -> int:
    """Processes registered as running torch here (this one included), stale pid files removed."""
    count = 0
    for entry in _registry().glob("*.pid"):
        try:
            pid = int(entry.stem)
        except ValueError:
            continue
        if _alive(pid):
            count += 1
        else:
            entry.unlink(missing_ok=True)
    return max(1, count)


def thread_share(setting: str | int = "auto") -> int:
    """The thread count for this process: IAU_THREADS, else a fixed setting, else cores // live peers."""
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
    return max(1, usable_cores() // live_peers())


def _unregister() -> None:
    if _registered is not None:
        _registered.unlink(missing_ok=True)


def set_torch_threads(setting: str | int = "auto") -> int:
    """Register this process and set torch's intra-op threads to its share; returns the count."""
    global _setting, _registered
    import torch

    _setting = setting
    if _registered is None:
        _registered = _registry() / f"{os.getpid()}.pid"
        _registered.touch()
        atexit.register(_unregister)
    threads = thread_share(setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def rebalance_threads() -> int:
    """Re-take this process's share (peers may have started or ended); cheap, for epoch boundaries."""
    if _registered is None:
        return set_torch_threads(_setting)
    import torch

    threads = thread_share(_setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def prepare_process(setting: str | int = "auto") -> int:
    """The first call of every entry point that runs torch: offline settings, then its thread share."""
    quiet_offline_env()
    return set_torch_threads(setting)
