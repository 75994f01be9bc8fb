"""A figure of bench.json: a ratio, its target and its verdict, with what produced it. A figure that could not be
measured keeps its key with value null and a status saying why ("not available: ...").

The verdict is one of
- "met" / "missed": the value against the target;
- "noisy: rerun": a side's repetitions spread past timing.SPREAD_BOUND, or the value is impossible (below its
  floor: e.g. a GR epoch cheaper than a plain one, when GR does the plain epoch's work and more). Either way the
  machine was busy, and neither "met" nor "missed" would mean anything;
- "reported": a figure without a target here (orchestration_overhead, its parts beside it), or whose target is
  stated for another device (reference_models_speedup: a GPU row);
- "not available".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from benchmarks.timing import SPREAD_BOUND

Direction = Literal[">=", "<="]
MET, MISSED, NOISY, REPORTED, UNAVAILABLE = "met", "missed", "noisy: rerun", "reported", "not available"


@dataclass(frozen=True)
class Target:
    bound: float
    direction: Direction
    at: str | None = None  # where the target is stated, when not at every size
    device: str | None = None  # the device type it is stated for ("cuda"), when not every device

    def met(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value >= self.bound if self.direction == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.direction} {self.bound:g}"


FULL_SIZE = "|D| = 60,000 (the full run)"
# The targets (issue 15, restated by issue 29), one place. None: a figure reported with its parts, no target.
TARGETS: dict[str, Target | None] = {
    "batch_cost_vs_retrain": Target(100, ">=", at=FULL_SIZE),
    "speedup_vs_retrain": Target(1000, ">=", at=FULL_SIZE),
    "iau_vs_limit": Target(2, "<="),
    "eta_rule_passes": Target(3, "<="),
    "gr_epoch_overhead": Target(2.0, "<="),
    "reference_models_speedup": Target(2, ">=", device="cuda"),
    "concurrent_slowdown": Target(1.05, "<="),
    "orchestration_overhead": None,
    "peak_memory_ratio": Target(1.1, "<="),
}
KEYS = tuple(TARGETS)


@dataclass
class Figure:
    key: str
    value: float | None
    detail: dict = field(default_factory=dict)  # the measurements the ratio comes from, and side figures
    status: str = "measured"  # or "not available: <why>"
    spread: dict[str, float] = field(default_factory=dict)  # each side's (max - min) / min over its repetitions
    floor: float | None = None  # the least the value can physically be; below it the run was disturbed
    device: str = "cpu"  # the device type it was measured on

    @property
    def target(self) -> Target | None:
        return TARGETS[self.key]

    def noise(self) -> str | None:
        """Why the figure cannot be judged (its verdict is "noisy: rerun"), or None."""
        if self.floor is not None and self.value is not None and self.value < self.floor:
            return f"impossible: {self.value:.3g} is below {self.floor:g}, the least it can be"
        noisy = {side: s for side, s in self.spread.items() if not s <= SPREAD_BOUND}
        if noisy:
            return "repetitions spread " + ", ".join(f"{side} {s:.0%}" for side, s in noisy.items()) + \
                f" (bound {SPREAD_BOUND:.0%})"
        return None

    def verdict(self) -> str:
        target = self.target
        if self.status != "measured":
            return UNAVAILABLE
        if target is None or (target.device is not None and target.device != self.device):
            return REPORTED
        if self.noise():
            return NOISY
        return MET if target.met(self.value) else MISSED

    def as_json(self) -> dict:
        verdict, target = self.verdict(), self.target
        out = {"value": self.value, "target": str(target) if target else None, "verdict": verdict,
               "met": verdict == MET, "status": self.status, "spread": self.spread,
               "spread_bound": SPREAD_BOUND, "floor": self.floor}
        if verdict == NOISY:
            out["noise"] = self.noise()
        if target is not None and (target.at or target.device):
            out["target_at"] = target.at or f"a {target.device} device"
        return out | self.detail


def unavailable(key: str, why: str, **detail) -> Figure:
    return Figure(key, None, detail, f"not available: {why}")
