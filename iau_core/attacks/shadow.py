"""The paper's attack (Shokri et al., as docs/metrics.md fixes it): one MLP on [softmax(logits) - onehot(y),
onehot(y)] telling the first `mia.num_shadow` reference models' training members from their non-members."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iau_core.attacks.base import Attack, AttackSetup
from iau_core.attacks.references import ReferenceModel
from iau_core.config import MiaParams
from iau_core.data import Split
from iau_core.training import accuracy, batches, predict_logits


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


@dataclass(frozen=True)
class ShadowReport:
    shadow_train_acc: list[float]
    shadow_val_acc: list[float]
    attack_train_acc: float
    attack_epochs: int  # the epochs whose weights the attack MLP kept (its early stop)


@dataclass
class ShadowAttack(Attack):
    attack: AttackMLP
    num_classes: int
    report: ShadowReport | None = None  # how its fit went (only when fitted in this process)

    def scores(self, target: nn.Module, split: Split, device: torch.device) -> np.ndarray:
        """The attack's member probability, without its 0.5 threshold (shadow_auc ranks by it)."""
        return self.member_probability(target, split, device).numpy()

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: value.detach().cpu().numpy() for name, value in self.attack.state_dict().items()}

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


def fit(references: list[ReferenceModel], setup: AttackSetup) -> ShadowAttack:
    attack, report = fit_shadow_attack(references, setup.params.mia, setup.num_classes, setup.device, setup.seed)
    return ShadowAttack(attack.attack, attack.num_classes, report)


def restore(arrays: dict[str, np.ndarray], setup: AttackSetup) -> ShadowAttack:
    mlp = AttackMLP(2 * setup.num_classes, setup.params.mia.hidden, setup.params.mia.dropout)
    mlp.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in arrays.items()})
    return ShadowAttack(mlp.eval(), setup.num_classes)


def fit_shadow_attack(references: list[ReferenceModel], mia: MiaParams, num_classes: int, device: torch.device,
                      seed: int) -> tuple[ShadowAttack, ShadowReport]:
    """The attack MLP on the first `mia.num_shadow` reference models' members (label 1) and non-members (0)."""
    if mia.num_shadow > len(references):
        raise ValueError(f"mia.num_shadow={mia.num_shadow} but only {len(references)} reference models exist")
    features, labels, train_accs, val_accs = [], [], [], []
    for ref in references[:mia.num_shadow]:
        train_accs.append(accuracy(ref.model, ref.members, device))
        val_accs.append(accuracy(ref.model, ref.nonmembers, device))
        for split, is_member in ((ref.members, 1.0), (ref.nonmembers, 0.0)):
            logits = predict_logits(ref.model, split, device)
            features.append(attack_features(logits, split.y.cpu(), num_classes))
            labels.append(torch.full((len(split),), is_member))
    attack, attack_acc, epochs = _fit_attack(torch.cat(features), torch.cat(labels), mia, seed)
    return ShadowAttack(attack, num_classes), ShadowReport(train_accs, val_accs, attack_acc, epochs)


def _fit_attack(features: torch.Tensor, labels: torch.Tensor, mia: MiaParams,
                seed: int) -> tuple[AttackMLP, float, int]:
    """Binary cross-entropy on the attack features; small enough to train on the CPU anywhere. A random
    `mia.holdout` share of the records stops training once their loss has not fallen for `mia.patience` epochs
    (the paper names no epoch count; 50 fixed epochs took a minute of `make run`). Returns the MLP, its accuracy
    on all the records and the epoch whose weights it kept."""
    torch.manual_seed(seed)
    attack = AttackMLP(features.shape[1], mia.hidden, mia.dropout)
    optimizer = torch.optim.Adam(attack.parameters(), lr=mia.lr)
    gen = torch.Generator().manual_seed(seed)
    held_count = int(mia.holdout * len(labels))
    order = torch.randperm(len(labels), generator=gen) if held_count else torch.arange(len(labels))
    held, fit_on = order[:held_count], order[held_count:]
    best_loss, best_state, best_epoch, epoch = math.inf, None, 0, 0
    for epoch in range(1, mia.epochs + 1):
        attack.train()
        for idx in batches(len(fit_on), mia.batch_size, gen):
            idx = fit_on[idx]
            loss = F.binary_cross_entropy_with_logits(attack(features[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if len(held) == 0:
            continue
        attack.eval()
        with torch.no_grad():
            held_loss = F.binary_cross_entropy_with_logits(attack(features[held]), labels[held]).item()
        if held_loss < best_loss:
            best_loss, best_state, best_epoch = held_loss, copy.deepcopy(attack.state_dict()), epoch
        elif epoch - best_epoch >= mia.patience:
            break
    if best_state is not None:
        attack.load_state_dict(best_state)
    attack.eval()
    with torch.no_grad():
        train_acc = 100.0 * ((attack(features) > 0).float() == labels).float().mean().item()
    return attack, train_acc, best_epoch or epoch
