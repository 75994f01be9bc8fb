"""Clocks: device-synchronized wall time, repeated. A busy machine only ever adds time, so every figure is read
off the fastest repetition (the minimum) of each side, and the sides of one comparison run interleaved (A B A B,
never A A A then B B B), so a neighbour that starts or stops mid-way slows both sides alike. Each side's spread,
(max - min) / min over its repetitions, says how disturbed the run was: past SPREAD_BOUND the figure is
"noisy: rerun" (figures.Figure), never met or missed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from iau_core.training import synchronize

# A side whose slowest repetition took more than 1.5x its fastest ran on a machine busy enough to make the fastest
# suspect too: its figure is "noisy: rerun". Repetitions on an idle 2-core machine spread up to about 30% (the 60k
# retraining runs of issue 29: 114 / 126 / 146 s), so the bound sits above that.
SPREAD_BOUND = 0.5
# A sub-second side (the cached step, the limit) is timed as the least of this many calls in a row per repetition,
# as timeit does: one scheduler tick on a 0.1 s call is a 10% swing, and the figure divides by that time.
BURST = 5


@dataclass(frozen=True)
class Timed:
    runs: tuple[float, ...]  # seconds of every repetition, in order
    result: Any = None  # the last repetition's return value

    @property
    def minimum(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> float:
        return spread_of(self.runs)

    def as_row(self) -> dict:
        """`seconds` is the minimum (what the figures divide); the median and every run beside it."""
        return {"seconds": self.minimum, "median": self.median, "spread": self.spread, "runs": list(self.runs)}


def spread_of(values) -> float:
    """(max - min) / min: 0 for identical repetitions (and for one)."""
    values = list(values)
    low, high = min(values), max(values)
    if low <= 0:
        return 0.0 if high == low else float("inf")
    return (high - low) / low


def clock(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, fn()) with the device synchronized before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def repeat(device: torch.device, reps: int, fn: Callable[[], Any]) -> Timed:
    """fn timed `reps` times (one side alone: nothing to compare it with in the same loop)."""
    return interleaved(device, reps, {"only": fn})["only"]


def interleaved(device: torch.device, reps: int, sides: dict[str, Callable[[], Any]],
                bursts: dict[str, int] | None = None) -> dict[str, Timed]:
    """Every side timed `reps` times, one repetition of each in turn (A B C A B C ...); a side named in `bursts`
    counts, in each repetition, the least of that many calls in a row."""
    runs: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, Any] = {}
    for _ in range(reps):
        for name, fn in sides.items():
            calls = [clock(device, fn) for _ in range((bursts or {}).get(name, 1))]
            seconds, results[name] = min(calls, key=lambda call: call[0])
            runs[name].append(seconds)
    return {name: Timed(tuple(runs[name]), results.get(name)) for name in sides}


def median_of(values: list[float]) -> float:
    return statistics.median(values)
