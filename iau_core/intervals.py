"""Confidence intervals of paired differences: a t-interval over seeds, and with one seed a paired bootstrap over
the records (which says whether this model moved, not how training varies). Numbers in, numbers out; the verdicts
that read them are iau_core/verdicts.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from iau_core.attacks.roc import Roc

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of paired differences over seeds and its two-sided t-interval (lo, hi NaN with one seed)."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def known(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def excludes_zero(self) -> bool:
        return self.known and (self.lo > 0 or self.hi < 0)

    def text(self, places: int = 3) -> str:
        if not math.isfinite(self.mean):
            return "–"
        if not self.known:
            return f"{self.mean:+.{places}f} (CI n/a)"
        return f"{self.mean:+.{places}f} [{self.lo:+.{places}f}, {self.hi:+.{places}f}]"


def t_interval(diffs: np.ndarray | list[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t_{(1+c)/2, n-1} * s / sqrt(n) over the finite differences; one value gives no interval."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    d = np.where(np.abs(d) < 1e-12, 0.0, d)  # float round-off of equal scores is no difference
    if d.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(d.mean())
    if d.size < 2:
        return Interval(mean, float("nan"), float("nan"), int(d.size))
    half = float(stats.t.ppf((1 + confidence) / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return Interval(mean, mean - half, mean + half, int(d.size))


# Bootstrap draws of a one-seed record interval: its ends vary by about 0.003 AUC from one set of draws to
# another (|D_f| = 80 against 2,000 held-out records).
RESAMPLES = 1000


def record_interval(method: Roc, reference: Roc, resamples: int = RESAMPLES, seed: int = 0,
                    confidence: float = CONFIDENCE) -> Interval:
    """AUC(method) - AUC(reference) of one attack on the same members (D_f) and non-members, with a paired
    percentile bootstrap over those records: each draw resamples the members and the non-members with
    replacement and scores both models on the same draw. It covers which records were drawn, not the training's
    randomness (that needs seeds), so it is the interval of a one-seed run only."""
    if method.members is None or reference.members is None:
        return Interval(method.auc - reference.auc, float("nan"), float("nan"), 1)
    draws = RecordDraws(len(method.members), len(method.nonmembers), resamples, seed)
    return draws.interval(draws.aucs(method), draws.aucs(reference), method.auc - reference.auc, confidence)


class RecordDraws:
    """One set of bootstrap draws over m members and n non-members (counts u, v of each record in each draw),
    shared by every model scored on those records, so each model's AUCs over the draws are computed once and
    any two models' differences are paired."""

    def __init__(self, members: int, nonmembers: int, resamples: int = RESAMPLES, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.u = rng.multinomial(members, np.full(members, 1 / members), size=resamples).astype(np.float32)
        self.v = rng.multinomial(nonmembers, np.full(nonmembers, 1 / nonmembers), size=resamples).astype(np.float32)

    def aucs(self, found: Roc) -> np.ndarray:
        """The model's AUC on each draw. AUC is the mean over (member, non-member) pairs of [member scores higher]
        (ties count half), so a draw's AUC is the weighted mean u @ H @ v / (m n)."""
        members, nonmembers = found.members[:, None], found.nonmembers[None, :]
        wins = ((members > nonmembers) + 0.5 * (members == nonmembers)).astype(np.float32)
        return np.einsum("bj,bj->b", self.u @ wins, self.v) / wins.size

    @staticmethod
    def interval(aucs: np.ndarray, reference_aucs: np.ndarray, difference: float,
                 confidence: float = CONFIDENCE) -> Interval:
        tail = (1 - confidence) / 2
        lo, hi = np.quantile(aucs - reference_aucs, [tail, 1 - tail])
        return Interval(float(difference), float(lo), float(hi), 1)
