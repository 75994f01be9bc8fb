"""Membership-inference attacks.

The paper's attack (Shokri et al., as METRICS.md fixes it): shadow models trained with the victim's recipe
on attacker-only data (the shadow pool, disjoint from D, val and test), one MLP attack on the features
[softmax(logits) - onehot(y), onehot(y)] telling a shadow's training members from its non-members.
The loss-threshold attack beside it is per-example and needs no shadows (mia_auc, tpr_at_1pct_fpr).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from iau_core.config import MiaParams, TrainingParams
from iau_core.data import Split
from iau_core.training import accuracy, batches, per_sample_losses, predict_logits, train_model


def attack_features(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, 2 * num_classes): how far the prediction is from the label, and which label it is."""
    onehot = F.one_hot(y, num_classes).float()
    return torch.cat([logits.softmax(1) - onehot, onehot], dim=1)


class AttackMLP(nn.Module):
    """Hidden layers (paper: 256, 128) with ReLU and dropout; one logit, read through a sigmoid."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (N, 2C) -> (N,) logit of 'member'
        return self.net(features).squeeze(1)


@dataclass
class ShadowAttack:
    attack: AttackMLP
    num_classes: int

    @torch.no_grad()
    def member_probability(self, target: nn.Module, split: Split, device: torch.device) -> torch.Tensor:
        """P(member) for each record of `split` under `target`, from its outputs alone (black box)."""
        features = attack_features(predict_logits(target, split, device), split.y.cpu(), self.num_classes)
        self.attack.eval()
        return torch.sigmoid(self.attack.cpu()(features))

    def member_rate(self, target: nn.Module, split: Split, device: torch.device) -> float:
        """% of `split` the attack calls 'member' (mia_forget_asr when split is D_f)."""
        return 100.0 * (self.member_probability(target, split, device) > 0.5).float().mean().item()

    def balanced_accuracy(self, target: nn.Module, members: Split, nonmembers: Split,
                          device: torch.device) -> float:
        """(TPR + TNR) / 2 in %: 50 means the attack sees nothing (attack_strength on the original)."""
        tpr = self.member_rate(target, members, device)
        tnr = 100.0 - self.member_rate(target, nonmembers, device)
        return (tpr + tnr) / 2


@dataclass(frozen=True)
class ShadowReport:
    shadow_train_acc: list[float]
    shadow_val_acc: list[float]
    attack_train_acc: float


def train_shadow_attack(pool: Split, build_model: Callable[[int], nn.Module], training: TrainingParams,
                        mia: MiaParams, num_classes: int, device: torch.device,
                        seed: int) -> tuple[ShadowAttack, ShadowReport]:
    """Train `mia.num_shadow` shadow models, each on a random half of the pool with the victim's recipe
    (early stopping on a slice of its own non-members), then the attack on their members vs non-members."""
    features, labels, train_accs, val_accs = [], [], [], []
    for i in range(mia.num_shadow):
        gen = torch.Generator().manual_seed(seed + 7919 * (i + 1))
        order = torch.randperm(len(pool), generator=gen)
        half = len(pool) // 2
        members, nonmembers = pool.take(order[:half]), pool.take(order[half:2 * half])
        early_stop = nonmembers.take(torch.arange(min(len(nonmembers), max(1, half // 4))))
        shadow = build_model(seed + i + 1).to(device)
        report = train_model(shadow, members, early_stop, training, device, seed + i + 1)
        train_accs.append(accuracy(shadow, members, device))
        val_accs.append(report.best_val_acc)
        for split, is_member in ((members, 1.0), (nonmembers, 0.0)):
            features.append(attack_features(predict_logits(shadow, split, device), split.y.cpu(), num_classes))
            labels.append(torch.full((len(split),), is_member))
    attack, attack_acc = _fit_attack(torch.cat(features), torch.cat(labels), mia, seed)
    return ShadowAttack(attack, num_classes), ShadowReport(train_accs, val_accs, attack_acc)


def _fit_attack(features: torch.Tensor, labels: torch.Tensor, mia: MiaParams,
                seed: int) -> tuple[AttackMLP, float]:
    """Binary cross-entropy on the attack features; small enough to train on the CPU anywhere."""
    torch.manual_seed(seed)
    attack = AttackMLP(features.shape[1], mia.hidden, mia.dropout)
    optimizer = torch.optim.Adam(attack.parameters(), lr=mia.lr)
    gen = torch.Generator().manual_seed(seed)
    attack.train()
    for _ in range(mia.epochs):
        for idx in batches(len(labels), mia.batch_size, gen):
            loss = F.binary_cross_entropy_with_logits(attack(features[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    attack.eval()
    with torch.no_grad():
        train_acc = 100.0 * ((attack(features) > 0).float() == labels).float().mean().item()
    return attack, train_acc


def loss_attack(model: nn.Module, members: Split, nonmembers: Split, device: torch.device) -> tuple[float, float]:
    """Loss-threshold attack: (ROC AUC of -loss, TPR at 1% FPR) for members vs non-members.

    Callers pass equal-size sets; an AUC of 0.5 means the two look alike to the attack.
    """
    scores = torch.cat([-per_sample_losses(model, members, device), -per_sample_losses(model, nonmembers, device)])
    truth = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    auc = float(roc_auc_score(truth, scores.numpy()))
    fpr, tpr, _ = roc_curve(truth, scores.numpy())
    return auc, float(tpr[fpr <= 0.01].max())
