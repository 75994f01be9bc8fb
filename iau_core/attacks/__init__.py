"""Membership-inference attacks, one module each, found by name, all learning from the attacker's reference models
(references.py: trained like the victim on the shadow pool only, so they never saw a record of D).

The names are listed once, torch-free, in iau_core/config/attacks.py (ATTACK_NAMES). The attack <name> is
iau_core/attacks/<name>.py with two functions: `fit(references, AttackSetup) -> Attack` and
`restore(arrays, AttackSetup) -> Attack` (rebuilds it from `Attack.arrays()`, what the reference-attack run
stores). Every `Attack` gives per-record scores (higher = member) and its ROC is read off them in one place
(base.Attack.roc, roc.roc). Today:

- `shadow`: the paper's attack (Shokri et al.), settings `mia:`;
- `loss`: the loss-threshold attack, no settings, learns nothing;
- `lira`: offline LiRA (Carlini et al. 2022), settings `lira:` (its `num_reference` sizes the reference models);
- `rmia`: offline RMIA (Zarifzadeh et al. 2024), settings `rmia:`.

iau_core/metrics.py scores every model with each of them (docs/metrics.md names the keys).
"""

from __future__ import annotations

from importlib import import_module

from iau_core.attacks.base import Attack, AttackSetup
from iau_core.attacks.lira import LiraAttack, fit_lira, logit_confidence
from iau_core.attacks.loss import LossAttack, loss_attack
from iau_core.attacks.references import ReferenceModel, train_reference_models
from iau_core.attacks.rmia import RmiaAttack
from iau_core.attacks.roc import Roc, label_matched, roc
from iau_core.attacks.shadow import AttackMLP, ShadowAttack, ShadowReport, attack_features, fit_shadow_attack
from iau_core.config import ATTACK_NAMES


class Attacks(dict[str, Attack]):
    """The fitted attacks by name (ATTACK_NAMES order); `attacks.lira` reads `attacks['lira']`."""

    def __getattr__(self, name: str) -> Attack:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _module(name: str):
    if name not in ATTACK_NAMES:
        raise ValueError(f"unknown attack {name!r}; known: {list(ATTACK_NAMES)}")
    return import_module(f"{__name__}.{name}")


def fit_attack(name: str, references: list[ReferenceModel], setup: AttackSetup) -> Attack:
    return _module(name).fit(references, setup)


def restore_attack(name: str, arrays: dict, setup: AttackSetup) -> Attack:
    return _module(name).restore(arrays, setup)


def fit_all(references: list[ReferenceModel], setup: AttackSetup) -> Attacks:
    """Every attack of ATTACK_NAMES, fitted on the same reference models."""
    return Attacks({name: fit_attack(name, references, setup) for name in ATTACK_NAMES})


__all__ = ["ATTACK_NAMES", "Attack", "AttackMLP", "AttackSetup", "Attacks", "LiraAttack", "LossAttack",
           "ReferenceModel", "RmiaAttack", "Roc", "ShadowAttack", "ShadowReport", "attack_features", "fit_all",
           "fit_attack", "fit_lira", "fit_shadow_attack", "label_matched", "logit_confidence", "loss_attack",
           "restore_attack", "roc", "train_reference_models"]
