"""Membership-inference attacks, one module each, and the attacker's reference models (references.py), trained like
the victim on the shadow pool only, so they never saw a record of D:

- `shadow`: the paper's attack (Shokri et al.), settings `mia:`;
- `lira`: offline LiRA (Carlini et al. 2022) on the same reference models, settings `lira:`;
- `loss`: the loss-threshold attack, no reference models.

iau_core/metrics.py scores every model with each of them (docs/metrics.md names the keys).
"""

from iau_core.attacks.lira import LiraAttack, fit_lira, logit_confidence
from iau_core.attacks.loss import loss_attack
from iau_core.attacks.references import ReferenceModel, train_reference_models
from iau_core.attacks.roc import Roc, label_matched, roc
from iau_core.attacks.shadow import AttackMLP, ShadowAttack, ShadowReport, attack_features, fit_shadow_attack

__all__ = ["AttackMLP", "LiraAttack", "ReferenceModel", "Roc", "ShadowAttack", "ShadowReport", "attack_features",
           "fit_lira", "fit_shadow_attack", "label_matched", "logit_confidence", "loss_attack", "roc",
           "train_reference_models"]
