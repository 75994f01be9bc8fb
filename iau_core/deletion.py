"""A deletion batch's science: which way to unlearn (the ladder of methods in cost order, or retraining alone when
drift or risk says so), and the gate a new model must pass before it replaces the champion. The orchestration
(ledger, registry, DVC) lives in tasks/ and flows/; this module only decides and measures.

The gate reads two numbers, from data a real batch has (never a retrained model):
- utility: the validation-accuracy drop against the champion;
- privacy: the headline attack (attacks.headline: offline LiRA or RMIA, iau_core.attacks) on the deleted records
  against held-out non-members of the same label mix. A model that forgot them should see them as it sees records
  it never trained on: AUC near 0.5. A small batch gives a noisy AUC, so the threshold is 0.5 +
  max_attack_advantage + noise_z standard deviations of the AUC of two same-distribution samples of these sizes
  (the Mann-Whitney null).
The gate knows its power: the threshold is also the smallest AUC it can detect at this batch size. If the
champion's own AUC on the batch is not above it, there is nothing visible to remove and the privacy verdict is
"inconclusive", never "passed"; so is a candidate identical to the champion. nightly.gate.when_inconclusive says
whether such a batch promotes (verdict recorded) or retrains.
A parameter or validation loss that is not finite fails the gate outright.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.attacks import Attack, label_matched
from iau_core.config import GOLD, DriftParams, GateParams, Params, UnlearningParams
from iau_core.config.unlearning import EXACT_METHODS
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


# The privacy verdict: "passed" (the gate could see membership on the champion and the candidate no longer shows it),
# "failed" (the candidate still shows it), "inconclusive" (the champion itself shows no more than the gate accepts:
# nothing visible to remove, so passing would say nothing).
PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


def smallest_detectable_auc(members: int, nonmembers: int, gate: GateParams) -> float:
    """The gate's threshold for a batch of this size: 0.5 + max_attack_advantage + noise_z * (the AUC's standard
    deviation under the null). An attack AUC at or below it cannot be told from an acceptable model, so only a
    champion above it has membership the gate could see being removed (the smallest shift it can detect is this
    minus 0.5)."""
    return 0.5 + gate.max_attack_advantage + gate.noise_z * chance_auc_std(members, nonmembers)


@dataclass(frozen=True)
class GateResult:
    passed: bool  # the utility check held and the privacy verdict is "passed"
    reasons: list[str]  # why it did not pass (empty when it passed)
    privacy_verdict: str  # passed, failed or inconclusive (see above)
    utility_ok: bool  # finite, and the validation accuracy dropped no more than allowed
    attack: str  # the attack the gate judged by (attacks.headline)
    val_acc_champion: float
    val_acc_candidate: float
    val_acc_drop: float
    forget_auc_champion: float  # the attack's AUC of the deleted records before unlearning...
    forget_auc_candidate: float  # ...and after; non-members label-matched to them
    auc_threshold: float  # = the smallest AUC the gate can detect for this batch's size (smallest_detectable_auc)
    detectable_shift: float  # auc_threshold - 0.5
    unchanged: bool  # the candidate's parameters equal the champion's (no step taken)
    members: int
    nonmembers: int

    def accepts(self, when_inconclusive: str, method: str) -> bool:
        """Whether the batch may promote this candidate: it passed, or the privacy verdict is inconclusive, the
        utility check held, and the policy promotes then (or the candidate is exact, retrained or `sisa`: a model
        that never saw the records, which retraining again could not improve on)."""
        if self.passed:
            return True
        return (self.privacy_verdict == INCONCLUSIVE and self.utility_ok
                and (when_inconclusive == "promote" or is_exact(method)))

    def as_dict(self) -> dict:
        return asdict(self)


def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def evaluate_gate(champion: nn.Module, candidate: nn.Module, forget: Split, val: Split, heldout: Split,
                  attack: Attack, gate: GateParams, device: torch.device, seed: int,
                  attack_name: str = "lira") -> GateResult:
    """Score the candidate against the champion on the batch's records; see the module docstring."""
    nonmembers = label_matched(heldout, forget, seed)
    champ_logits, cand_logits = predict_logits(champion, val, device), predict_logits(candidate, val, device)
    val_y = val.y.cpu()
    acc_champion, acc_candidate = logits_accuracy(champ_logits, val_y), logits_accuracy(cand_logits, val_y)
    finite = all(torch.isfinite(p).all() for p in candidate.parameters()) and \
        math.isfinite(F.cross_entropy(cand_logits, val_y).item())
    threshold = smallest_detectable_auc(len(forget), len(nonmembers), gate)
    auc_champion = attack.roc(champion, forget, nonmembers, device).auc
    auc_candidate = attack.roc(candidate, forget, nonmembers, device).auc if finite else float("nan")
    unchanged = same_parameters(champion, candidate)
    reasons = []
    if not finite:
        reasons.append("the model's parameters or validation loss are not finite")
    drop = acc_champion - acc_candidate
    if not drop <= gate.max_val_acc_drop:  # also catches NaN
        reasons.append(f"validation accuracy dropped {drop:.2f} points (limit {gate.max_val_acc_drop})")
    utility_ok = not reasons
    if not finite:
        verdict = FAILED  # nothing to measure privacy on; the utility reason says why
    elif not auc_candidate <= threshold:
        verdict = FAILED
        reasons.append(f"{attack_name} still tells the deleted records from non-members: AUC {auc_candidate:.3f} > "
                       f"{threshold:.3f}")
    elif unchanged:  # checked before the champion's AUC: a model nobody changed never 'passes'
        verdict = INCONCLUSIVE
        reasons.append("privacy inconclusive: the candidate is the champion unchanged (no step taken)")
    elif not auc_champion > threshold:
        verdict = INCONCLUSIVE
        reasons.append(f"privacy inconclusive: the champion's own {attack_name} AUC on these {len(forget)} records "
                       f"is {auc_champion:.3f}, not above the smallest AUC the gate can detect at this batch size "
                       f"({threshold:.3f}): nothing visible to remove")
    else:
        verdict = PASSED
    return GateResult(utility_ok and verdict == PASSED, reasons, verdict, utility_ok, attack_name, acc_champion,
                      acc_candidate, drop, auc_champion, auc_candidate, threshold, threshold - 0.5, unchanged,
                      len(forget), len(nonmembers))


def is_exact(method: str) -> bool:
    """Whether the method's model never saw the forgotten records: retraining, or sisa (retrains their shards)."""
    return method == GOLD or method in EXACT_METHODS


@dataclass(frozen=True)
class Attempt:
    """One rung of the ladder: the method, its gate result, the seconds its unlearning took, and what an exact
    rung reports about itself (sisa: exact, the shards and slices it retrained)."""

    method: str
    gate: GateResult
    seconds: float
    accepted: bool  # GateResult.accepts under the batch's when_inconclusive policy
    exactness: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The record gates.json, the audit and the ledger keep per method (the gate's numbers, then these)."""
        return {**self.gate.as_dict(), "seconds": self.seconds, "accepted": self.accepted,
                "exact": is_exact(self.method), **self.exactness}


# What of a method's choices the batch's record keeps (sisa's: unlearning/sisa.py).
EXACTNESS_KEYS = ("shards", "slices", "shards_retrained", "slices_retrained", "retrained_shards")


def exactness(candidate: Any) -> dict:
    """The exactness keys of a candidate's choices (a MethodResult or Unlearned), if it has any."""
    chosen = getattr(candidate, "choices", None) or {}
    return {k: chosen[k] for k in EXACTNESS_KEYS if k in chosen}


def batch_unlearning(params: Params) -> UnlearningParams:
    """A deletion batch's unlearning settings: params.yaml's, with the nightly stop rule for the iterative rungs
    (nightly.stop_rule: by default the self-check, since a batch aims at passing its gate)."""
    return params.unlearning.model_copy(update={"stop_rule": params.nightly.stop_rule})


EXACT_RUNG = "sisa"


def rungs(ladder: Sequence[str], escalation: str | None, sharded: bool = False) -> list[str]:
    """The methods this batch tries: the whole ladder, or only its last rung (retraining) when the batch must
    retrain (escalation_reason: a high-tier request or a drift limit).

    On a sharded champion (training.shards > 1, with its checkpoints) `sisa` is the exact rung before full
    retraining: inserted before it when the ladder lacks it, and where the batch must retrain it goes there
    first (retraining stays behind it, should its gate fail)."""
    ladder = list(ladder)
    if sharded and EXACT_RUNG not in ladder:
        ladder.insert(len(ladder) - 1, EXACT_RUNG)
    if not escalation:
        return ladder if sharded else [m for m in ladder if m != EXACT_RUNG]
    return [EXACT_RUNG, ladder[-1]] if sharded else [ladder[-1]]


def climb_ladder(methods: Sequence[str], attempt: Callable[[str, list[Attempt]], tuple[Any, GateResult, float]],
                 when_inconclusive: str) -> tuple[Any | None, list[Attempt]]:
    """Try `methods` in order; `attempt(method, earlier)` unlearns and gates one (earlier: the rungs rejected so
    far) and returns (candidate, gate result, seconds). Returns the first accepted candidate, or None when every
    rung was rejected, with every attempt made; the rungs after the accepted one are never run."""
    attempts: list[Attempt] = []
    for method in methods:
        candidate, result, seconds = attempt(method, list(attempts))
        attempts.append(Attempt(method, result, seconds, result.accepts(when_inconclusive, method),
                                exactness(candidate)))
        if attempts[-1].accepted:
            return candidate, attempts
    return None, attempts


def rejection_reason(rejected: Sequence[Attempt]) -> str:
    """Why the cheaper rungs were not promoted, one clause per rung (the escalation recorded before retraining)."""
    def why(a: Attempt) -> str:
        policy = a.gate.privacy_verdict == INCONCLUSIVE and a.gate.utility_ok  # rejected by when_inconclusive
        return f"{a.method}: " + ("gate inconclusive, policy retrain: " if policy else "gate failed: ") + \
            "; ".join(a.gate.reasons)
    return " | ".join(why(a) for a in rejected)
