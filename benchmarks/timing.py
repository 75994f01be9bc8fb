"""Clocks: device-synchronized wall time, repeated; every figure is the median of its repetitions."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from iau_core.training import synchronize


@dataclass(frozen=True)
class Timed:
    median: float  # seconds
    runs: tuple[float, ...]
    result: Any  # the last repetition's return value

    def as_row(self) -> dict:
        return {"seconds": self.median, "runs": list(self.runs)}


def clock(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, fn()) with the device synchronized before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def repeat(device: torch.device, reps: int, fn: Callable[[], Any]) -> Timed:
    """fn timed `reps` times; the median and every run."""
    runs, result = [], None
    for _ in range(reps):
        seconds, result = clock(device, fn)
        runs.append(seconds)
    return Timed(statistics.median(runs), tuple(runs), result)


def median_of(values: list[float]) -> float:
    return statistics.median(values)
