"""A deletion batch's science: which way to unlearn (IAU, or retraining when drift or risk says so), and the
gate a new model must pass before it replaces the champion. The orchestration (ledger, registry, DVC) lives in
tasks/ and flows/; this module only decides and measures.

The gate reads two numbers, from data a real batch has (never a retrained model):
- utility: the validation-accuracy drop against the champion;
- privacy: offline LiRA (iau_core.attacks) on the deleted records against held-out non-members of the same
  label mix. A model that forgot them should see them as it sees records it never trained on: AUC near 0.5. A
  small batch gives a noisy AUC, so the threshold is 0.5 + max_attack_advantage + noise_z standard deviations
  of the AUC of two same-distribution samples of these sizes (the Mann-Whitney null).
A parameter or validation loss that is not finite fails the gate outright.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.attacks import LiraAttack, label_matched
from iau_core.config import DriftParams, GateParams
from iau_core.data import Split
from iau_core.training import logits_accuracy, predict_logits


@dataclass(frozen=True)
class Lineage:
    """What the champion has been through since the last full training (the drift counters)."""

    iau_batches_since_retrain: int
    forgotten_since_retrain: int
    train_size_at_retrain: int


def escalation_reason(batch_size: int, tiers: list[str], lineage: Lineage, drift: DriftParams) -> str | None:
    """Why this batch must retrain on the retained data instead of IAU, or None when IAU may run.

    High-tier requests always retrain (the operator notes: high-risk cases are escalated); so does a lineage that
    has had `max_iau_batches` IAU batches, or whose IAU batches (this one included) forget more than
    `max_forgotten_share` of the last full training set."""
    if "high" in tiers:
        return f"{tiers.count('high')} high-tier request(s) in the batch"
    if lineage.iau_batches_since_retrain >= drift.max_iau_batches:
        return (f"drift: {lineage.iau_batches_since_retrain} IAU batches since the last full retrain "
                f"(limit {drift.max_iau_batches})")
    share = (lineage.forgotten_since_retrain + batch_size) / max(1, lineage.train_size_at_retrain)
    if share > drift.max_forgotten_share:
        return (f"drift: this batch would bring the share of D forgotten by IAU since the last full retrain to "
                f"{share:.2%} (limit {drift.max_forgotten_share:.2%})")
    return None


def chance_auc_std(members: int, nonmembers: int) -> float:
    """Standard deviation of the ROC AUC when members and non-members come from one distribution."""
    return math.sqrt((members + nonmembers + 1) / (12 * members * nonmembers))


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # why it failed (empty when it passed)
    val_acc_champion: float
    val_acc_candidate: float
    val_acc_drop: float
    forget_auc_champion: float  # LiRA AUC of the deleted records before unlearning...
    forget_auc_candidate: float  # ...and after; non-members label-matched to them
    auc_threshold: float
    members: int
    nonmembers: int

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate_gate(champion: nn.Module, candidate: nn.Module, forget: Split, val: Split, heldout: Split,
                  lira: LiraAttack, gate: GateParams, device: torch.device, seed: int) -> GateResult:
    """Score the candidate against the champion on the batch's records; see the module docstring."""
    nonmembers = label_matched(heldout, forget, seed)
    champ_logits, cand_logits = predict_logits(champion, val, device), predict_logits(candidate, val, device)
    val_y = val.y.cpu()
    acc_champion, acc_candidate = logits_accuracy(champ_logits, val_y), logits_accuracy(cand_logits, val_y)
    finite = all(torch.isfinite(p).all() for p in candidate.parameters()) and \
        math.isfinite(F.cross_entropy(cand_logits, val_y).item())
    threshold = 0.5 + gate.max_attack_advantage + gate.noise_z * chance_auc_std(len(forget), len(nonmembers))
    auc_champion = lira.roc(champion, forget, nonmembers, device).auc
    auc_candidate = lira.roc(candidate, forget, nonmembers, device).auc if finite else float("nan")
    reasons = []
    if not finite:
        reasons.append("the model's parameters or validation loss are not finite")
    drop = acc_champion - acc_candidate
    if not drop <= gate.max_val_acc_drop:  # also catches NaN
        reasons.append(f"validation accuracy dropped {drop:.2f} points (limit {gate.max_val_acc_drop})")
    if finite and not auc_candidate <= threshold:
        reasons.append(f"LiRA still tells the deleted records from non-members: AUC {auc_candidate:.3f} > "
                       f"{threshold:.3f}")
    return GateResult(not reasons, reasons, acc_champion, acc_candidate, drop, auc_champion, auc_candidate,
                      threshold, len(forget), len(nonmembers))
