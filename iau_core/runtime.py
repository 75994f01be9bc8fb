"""What every process that runs torch does first: quiet offline settings, and its share of the cores.

Why a share: torch starts one compute thread per core. Two such processes on one machine oversubscribe it, and
OpenMP's busy-waiting threads then fight for the cores (measured on 2 cores: a 1.4 s epoch became 85 s). So each
process registers itself in a small folder of pid files and takes cores // (live registered processes) threads,
re-checked at least once a second while training (`rebalance_threads`).

OpenMP's waiting threads spin by default. Alone, that is 25-30% faster than sleeping (a default epoch on 2 cores:
2.4 s against 3.1 s). Oversubscribed, it collapses (two processes with 2 threads each on 2 cores: 34 s epochs
against 4.9 s when they sleep). So a process that starts while another is registered sets OMP_WAIT_POLICY=PASSIVE
(it must be set before torch loads OpenMP); one that starts alone spins, and gives its extra threads back within a
second of a peer's start. A job this registry does not know of (your own torch script) is not seen: set
OMP_WAIT_POLICY=PASSIVE in the environment when the machine is shared that way; a value you set is kept.

`threads` in params.yaml: `auto` (the share above) or a number; IAU_THREADS overrides both (a Dask worker sets 1).
"""

from __future__ import annotations

import atexit
import os
import tempfile
import time
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
}

THREADS_ENV = "IAU_THREADS"
REGISTRY_ENV = "IAU_THREAD_REGISTRY"  # a folder of pid files; tests and benchmarks may point it elsewhere

_setting: str | int = "auto"
_registered: Path | None = None
_next_check = 0.0  # time.monotonic() of the next registry read in rebalance_threads
REBALANCE_EVERY_S = 1.0


def quiet_offline_env() -> None:
    """Set the offline settings where the user has not chosen otherwise. Call before importing torch."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if "OMP_WAIT_POLICY" not in os.environ and _others_registered():
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # sharing from the start: waiting threads sleep


def _others_registered() -> bool:
    try:
        return live_peers(count_self=False) > 0
    except OSError:  # an unwritable registry folder: no sharing is known of
        return False


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


def live_peers(count_self: bool = True) -> int:
    """Processes registered as running torch here (this one included), stale pid files removed; at least 1."""
    count = 0
    for entry in _registry().glob("*.pid"):
        try:
            pid = int(entry.stem)
        except ValueError:
            continue
        if pid == os.getpid() and not count_self:
            continue
        if _alive(pid):
            count += 1
        else:
            entry.unlink(missing_ok=True)
    return max(1 if count_self else 0, count)


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
    """Re-take this process's share (peers may have started or ended). Cheap enough for every batch: it reads
    the registry at most once a second."""
    global _next_check
    if _registered is None:
        return set_torch_threads(_setting)
    import torch

    now = time.monotonic()
    if now < _next_check:
        return torch.get_num_threads()
    _next_check = now + REBALANCE_EVERY_S
    threads = thread_share(_setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def prepare_process(setting: str | int = "auto") -> int:
    """The first call of every entry point that runs torch: offline settings, then its thread share."""
    quiet_offline_env()
    return set_torch_threads(setting)
