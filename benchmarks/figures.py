"""A figure of bench.json: a ratio, its target and whether it is met, with what produced it. A figure that could
not be measured keeps its key with value null and a status saying why ("not available: ...")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal[">=", "<="]


@dataclass(frozen=True)
class Target:
    bound: float
    direction: Direction

    def met(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value >= self.bound if self.direction == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.direction} {self.bound:g}"


# The targets (issue 15), one place.
TARGETS: dict[str, Target] = {
    "speedup_vs_retrain": Target(1000, ">="),  # stated at |D| = 60,000
    "iau_vs_limit": Target(2, "<="),
    "eta_rule_passes": Target(3, "<="),
    "gr_epoch_overhead": Target(2.0, "<="),
    "reference_models_speedup": Target(2, ">="),
    "concurrent_slowdown": Target(1.05, "<="),
    "orchestration_overhead": Target(0.10, "<="),
    "peak_memory_ratio": Target(1.1, "<="),
}
KEYS = tuple(TARGETS)


@dataclass
class Figure:
    key: str
    value: float | None
    detail: dict = field(default_factory=dict)  # the measurements the ratio comes from, and side figures
    status: str = "measured"  # or "not available: <why>"

    @property
    def target(self) -> Target:
        return TARGETS[self.key]

    def as_json(self) -> dict:
        return {"value": self.value, "target": str(self.target), "met": self.target.met(self.value),
                "status": self.status, **self.detail}


def unavailable(key: str, why: str, **detail) -> Figure:
    return Figure(key, None, detail, f"not available: {why}")
