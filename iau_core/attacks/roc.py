"""What every attack's scores are read as: the ROC of members against non-members, and the non-members matched to a
forget set's labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from iau_core.data import Split


@dataclass(frozen=True)
class Roc:
    """An attack's scores on members against non-members, summarised (higher score = 'member').

    `tpr_at_0_1pct_fpr` is Carlini et al. 2022's low-FPR operating point. With N non-members the lowest nonzero FPR
    is 1/N, so 0.1% is a real operating point only with N >= 1,000; with fewer it is the TPR at FPR 0: the share of
    members scored strictly above every non-member (0 when the top non-member outscores all members)."""

    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    fpr: np.ndarray
    tpr: np.ndarray
    # The per-record scores it summarises, in the records' order: two models scored on the same records can be
    # compared record by record (iau_core.verdicts.record_interval).
    members: np.ndarray | None = None
    nonmembers: np.ndarray | None = None


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The ROC's true-positive rate at `max_fpr` false positives: the largest TPR among its points whose FPR is
    <= max_fpr (the lowest threshold that keeps the FPR within it). roc_curve always starts at (0, 0), so below
    the lowest nonzero FPR (1 / non-members) this is the TPR at FPR 0: the share of members scored above every
    non-member."""
    return float(tpr[fpr <= max_fpr].max())


def roc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> Roc:
    """ROC AUC and the true-positive rates at 1% and at 0.1% false positives (tpr_at_fpr). The 1% point is only
    real with a few hundred non-members or more (callers pass that many); the 0.1% point needs >= 1,000, and with
    fewer is the TPR at FPR 0."""
    scores = np.concatenate([member_scores, nonmember_scores])
    truth = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    fpr, tpr, _ = roc_curve(truth, scores)
    return Roc(float(roc_auc_score(truth, scores)), tpr_at_fpr(fpr, tpr, 0.01), tpr_at_fpr(fpr, tpr, 0.001), fpr,
               tpr, np.asarray(member_scores, dtype=float), np.asarray(nonmember_scores, dtype=float))


def label_matched(nonmembers: Split, like: Split, seed: int) -> Split:
    """As many non-members as possible (without repeats) whose label mix is that of `like`: so an attack on a
    selected D_f (outliers are mostly one class) is not read off the class alone."""
    pool_labels = nonmembers.y.cpu().numpy()
    labels, counts = np.unique(like.y.cpu().numpy(), return_counts=True)
    available = np.array([(pool_labels == c).sum() for c in labels])
    if not available.any():
        raise ValueError(f"no held-out record has any of D_f's labels {labels.tolist()}: nothing to match")
    labels, counts, available = labels[available > 0], counts[available > 0], available[available > 0]
    share = counts / counts.sum()  # labels no held-out record has are left out of the matching
    sizes = np.minimum(available, np.round(share * np.min(available / share)).astype(int))
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(pool_labels == c), size=int(n), replace=False)
             for c, n in zip(labels, sizes, strict=True)]
    return nonmembers.take(np.sort(np.concatenate(picks)))
