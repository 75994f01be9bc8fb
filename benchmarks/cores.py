"""The thread count of a timed run: the usable cores that other work is not already keeping busy.

Why: OpenMP's waiting threads sleep (iau_core/runtime.py), so a torch thread that shares its core with another
process's busy loop is woken late at every parallel region, and each op waits for it. Ops with more parallel regions
per record suffer more, so ratios move, not only times. Measured on 2 idle-then-busy cores (2026-12-08, a LeNet5
epoch at |D| = 8,000, plain and GR interleaved, least of 3): a GR epoch over a plain one was 1.72x at 1 thread and
1.91x at 2 threads on the idle machine; beside one busy-loop process, 1.64x at 1 thread but 2.07x at 2 threads,
which flipped the verdict (target <= 2). A timed process that keeps off the busy cores measures its own work.

Only the bench decides its threads from the load: its figures are times. The pipeline's runs never do (a different
thread count gives a different model; runtime.resolve_threads). A count the user chose (IAU_THREADS, or a number in
params.yaml's `threads`) is kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from iau_core.runtime import THREADS_ENV, resolve_threads, usable_cores

SAMPLE_SECONDS = 2.0  # long enough for a busy loop to show as a whole core, short beside a 10-minute bench
BUSY_AT = 0.5  # a core busy at least half the sample counts as taken: its neighbour would wake our thread late


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    busy_cores: float | None  # cores' worth of other work seen at the start (None: the user chose the count)
    reason: str


def busy_cores_beside(seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores' worth of CPU time that everything but this process used on this process's usable cores over
    `seconds` (Linux /proc/stat); None where it cannot be read."""
    cpus = _usable_cpu_names()
    first, own_first = _busy_and_total(cpus), _own_seconds()
    if first is None:
        return None
    time.sleep(seconds)
    second, own_second = _busy_and_total(cpus), _own_seconds()
    if second is None:
        return None
    busy, total = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    own = (own_second - own_first) * tick  # this process's own ticks in the sample (near zero: it sleeps)
    return max(0.0, (busy - own) / total * len(cpus))


def bench_threads(setting: str | int = "auto", seconds: float = SAMPLE_SECONDS) -> ThreadChoice:
    """The bench's thread count: the user's where they chose one, else the usable cores minus those busy with
    other work when the bench starts (at least one)."""
    if os.environ.get(THREADS_ENV) or setting != "auto":
        return ThreadChoice(resolve_threads(setting), None, "chosen (IAU_THREADS or params.yaml's threads)")
    cores = usable_cores()
    busy = busy_cores_beside(seconds)
    if busy is None:
        return ThreadChoice(cores, None, f"every usable core ({cores}): the load could not be read")
    taken = int(busy + (1 - BUSY_AT))  # round half up: a core busy half the time is taken
    threads = max(1, cores - taken)
    return ThreadChoice(threads, round(busy, 2), f"{cores} usable cores, {busy:.2f} busy with other work over "
                                                 f"{seconds:g} s at the start: {threads} thread(s)")


def _usable_cpu_names() -> list[str]:
    try:
        return [f"cpu{i}" for i in sorted(os.sched_getaffinity(0))]
    except AttributeError:  # not Linux: no per-core counters either
        return []


def _busy_and_total(cpus: list[str]) -> tuple[int, int] | None:
    """Summed (busy, total) ticks of `cpus` from /proc/stat (busy: all but idle and iowait)."""
    if not cpus:
        return None
    try:
        lines = open("/proc/stat").read().splitlines()
    except OSError:
        return None
    wanted, busy, total = set(cpus), 0, 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system
