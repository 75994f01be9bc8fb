"""Membership-inference attacks. Both learn only from reference models that the attacker trains, like the
victim, on the shadow pool (disjoint from D, val and test), so those models never saw any record of D.

- The paper's attack (Shokri et al., as METRICS.md fixes it): one MLP on [softmax(logits) - onehot(y), onehot(y)]
  telling the first `mia.num_shadow` reference models' training members from their non-members.
- Offline LiRA (Carlini et al. 2022): for each record, the reference models' confidences give its distribution
  when it is *not* a member; a target model that is unusually confident on it (one-sided Gaussian test) is
  evidence of membership. Per-example calibration is what the population attacks lack.
- The loss-threshold attack needs no reference models (mia_auc).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from iau_core.config import LiraParams, MiaParams, TrainingParams
from iau_core.data import Split
from iau_core.training import Progress, accuracy, batches, per_sample_losses, predict_logits, train_model


@dataclass(frozen=True)
class Roc:
    """An attack's scores on members against non-members, summarised (higher score = 'member')."""

    auc: float
    tpr_at_1pct_fpr: float
    fpr: np.ndarray
    tpr: np.ndarray


def roc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> Roc:
    """ROC AUC and the true-positive rate at 1% false positives (the largest TPR whose FPR is <= 1%). The
    1% point is only real with a few hundred non-members or more: callers pass that many."""
    scores = np.concatenate([member_scores, nonmember_scores])
    truth = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    fpr, tpr, _ = roc_curve(truth, scores)
    return Roc(float(roc_auc_score(truth, scores)), float(tpr[fpr <= 0.01].max()), fpr, tpr)


# --- reference models -------------------------------------------------------------------------------------------

@dataclass
class ReferenceModel:
    model: nn.Module
    members: Split  # its training half of the shadow pool
    nonmembers: Split  # the other half


def train_reference_models(pool: Split, build_model: Callable[[int], nn.Module], training: TrainingParams,
                           count: int, device: torch.device, seed: int,
                           progress: Progress | None = None) -> list[ReferenceModel]:
    """`count` models, each on a random half of the pool with the victim's recipe (early stopping on a slice of
    its own non-members), so they mimic the victim on data the victim never saw."""
    models = []
    for i in range(count):
        gen = torch.Generator().manual_seed(seed + 7919 * (i + 1))
        order = torch.randperm(len(pool), generator=gen)
        half = len(pool) // 2
        members, nonmembers = pool.take(order[:half]), pool.take(order[half:2 * half])
        early_stop = nonmembers.take(torch.arange(min(len(nonmembers), max(1, half // 4))))
        model = build_model(seed + i + 1).to(device)

        def log(line: str, i: int = i) -> None:
            if progress:
                progress(f"reference model {i + 1} of {count}: {line}")

        train_model(model, members, early_stop, training, device, seed + i + 1, log)
        models.append(ReferenceModel(model, members, nonmembers))
    return models


# --- the paper's shadow-model attack ----------------------------------------------------------------------------

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

    def roc(self, target: nn.Module, members: Split, nonmembers: Split, device: torch.device) -> Roc:
        """The same attack without its 0.5 threshold: how well its probabilities rank members first."""
        return roc(self.member_probability(target, members, device).numpy(),
                   self.member_probability(target, nonmembers, device).numpy())


@dataclass(frozen=True)
class ShadowReport:
    shadow_train_acc: list[float]
    shadow_val_acc: list[float]
    attack_train_acc: float


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


# --- offline LiRA -----------------------------------------------------------------------------------------------

def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) log(p_y / (1 - p_y)), computed stably as z_y - logsumexp_{j != y} z_j: LiRA's confidence, which
    is close to Gaussian across models where p_y itself is not."""
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, y.unsqueeze(1), float("-inf"))
    return true - others.logsumexp(1)


@dataclass(frozen=True)
class LiraAttack:
    """Each candidate record's confidence when it is not a member: mean and standard deviation over the
    reference models. `ids` are the sample ids the statistics are for (D and the held-out test records)."""

    ids: np.ndarray  # (N,) sorted
    mean: np.ndarray  # (N,)
    std: np.ndarray  # (N,)

    def scores(self, target: nn.Module, split: Split, device: torch.device) -> np.ndarray:
        """(len(split),) the one-sided test statistic (phi - mean) / std: large when `target` is more confident
        on a record than models that never saw it. Refuses records it has no statistics for."""
        pos = np.searchsorted(self.ids, split.ids.cpu().numpy())
        pos = np.minimum(pos, len(self.ids) - 1)
        if not np.array_equal(self.ids[pos], split.ids.cpu().numpy()):
            raise ValueError("LiRA has no reference statistics for some of these records; fit it on them first")
        phi = logit_confidence(predict_logits(target, split, device), split.y.cpu()).numpy()
        return (phi - self.mean[pos]) / self.std[pos]

    def roc(self, target: nn.Module, members: Split, nonmembers: Split, device: torch.device) -> Roc:
        return roc(self.scores(target, members, device), self.scores(target, nonmembers, device))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids, "mean": self.mean, "std": self.std}


def fit_lira(references: list[ReferenceModel], candidates: Split, params: LiraParams,
             device: torch.device) -> LiraAttack:
    """Reference statistics for every candidate record. With few references, one pooled within-record standard
    deviation is steadier than each record's own (Carlini et al., Sec. VI); the AUC then depends only on the
    per-record means."""
    order = torch.argsort(candidates.ids.cpu())
    candidates = candidates.take(order)
    phi = torch.stack([logit_confidence(predict_logits(ref.model, candidates, device), candidates.y.cpu())
                       for ref in references]).numpy()  # (K, N)
    mean = phi.mean(0)
    if params.per_example_variance and len(references) > 1:
        std = phi.std(0, ddof=1)
    else:
        pooled = np.sqrt(((phi - mean) ** 2).sum() / max(1, phi.size - phi.shape[1]))
        std = np.full(phi.shape[1], pooled if pooled > 0 else 1.0)
    return LiraAttack(candidates.ids.cpu().numpy(), mean, np.maximum(std, 1e-6))


# --- the loss-threshold attack ----------------------------------------------------------------------------------

def loss_attack(model: nn.Module, members: Split, nonmembers: Split, device: torch.device) -> Roc:
    """Loss-threshold attack: -loss as the member score."""
    return roc(-per_sample_losses(model, members, device).numpy(),
               -per_sample_losses(model, nonmembers, device).numpy())


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
