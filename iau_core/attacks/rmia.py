"""Offline RMIA (Zarifzadeh et al. 2024, 'Low-cost high-power membership inference attacks'), on LiRA's reference
models.

A record x is scored against population records z the target never trained on. With Pr(.|theta) the target's
softmax probability of the true label and Pr(.) that probability's mean over reference models,

    LR(x, z) = (Pr(x|theta) / Pr(x)) / (Pr(z|theta) / Pr(z)),   score(x) = share of z with LR(x, z) >= gamma.

Dividing by Pr(x) calibrates per record (a hard record is unlikely under every model, member or not); comparing with
z calibrates per target (a target that is confident everywhere raises every ratio alike). Offline, every reference
model is OUT for x (it never saw D), so Pr(x) is approximated from OUT models by the paper's linear rule
Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2 (`rmia.offline_a`). The z records come from the shadow pool (the
attacker's data); each reference trained on half of it, so Pr(z) is estimated the same way, from the references
that did *not* train on z: every probability in the ratio is then an offline estimate of the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from iau_core.attacks.base import Attack, AttackSetup, positions
from iau_core.attacks.references import ReferenceModel
from iau_core.data import Split
from iau_core.training import predict_logits


def true_label_probability(model: nn.Module, split: Split, device: torch.device) -> np.ndarray:
    """(N,) softmax probability of each record's own label: RMIA's Pr(x|theta)."""
    logits = predict_logits(model, split, device)
    return logits.softmax(1).gather(1, split.y.cpu().unsqueeze(1)).squeeze(1).double().numpy()


def offline_marginal(p_out: np.ndarray, a: float) -> np.ndarray:
    """The paper's offline Pr(x) from the OUT models' mean probability: ((1 + a) Pr_OUT + (1 - a)) / 2."""
    return 0.5 * ((1.0 + a) * p_out + (1.0 - a))


def rmia_scores(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """Share of population records z whose ratio Pr(z|theta)/Pr(z) is at most ratio_x / gamma, i.e. with
    LR(x, z) >= gamma; in [0, 1]."""
    sorted_z = np.sort(ratio_z)
    return np.searchsorted(sorted_z, ratio_x / gamma, side="right") / len(sorted_z)


@dataclass(frozen=True)
class RmiaAttack(Attack):
    """Pr_OUT for every candidate record (sorted `ids`), and the population records z with their Pr_OUT."""

    ids: np.ndarray  # (N,) sorted candidate ids
    p_out: np.ndarray  # (N,) mean true-label probability over the reference models (all OUT for D and test)
    population: Split  # the z records
    population_p_out: np.ndarray  # (Z,) mean over the references that did not train on each z
    offline_a: float
    gamma: float

    def scores(self, target: nn.Module, split: Split, device: torch.device) -> np.ndarray:
        pos = positions(self.ids, split.ids.cpu().numpy(), "RMIA")
        ratio_x = true_label_probability(target, split, device) / offline_marginal(self.p_out[pos], self.offline_a)
        ratio_z = (true_label_probability(target, self.population, device)
                   / offline_marginal(self.population_p_out, self.offline_a))
        return rmia_scores(ratio_x, ratio_z, self.gamma)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids, "p_out": self.p_out, "population_ids": self.population.ids.cpu().numpy(),
                "population_p_out": self.population_p_out}


def fit(references: list[ReferenceModel], setup: AttackSetup) -> RmiaAttack:
    """Pr_OUT of every candidate (every reference is OUT for D and test) and of `rmia.population_size` pool records
    that at least one reference did not train on."""
    settings = setup.params.rmia
    candidates = setup.candidates.take(torch.argsort(setup.candidates.ids.cpu()))
    p_out = np.mean([true_label_probability(ref.model, candidates, setup.device) for ref in references], axis=0)
    pool = setup.population
    pool_ids = pool.ids.cpu().numpy()
    trained_on = np.stack([np.isin(pool_ids, ref.members.ids.cpu().numpy()) for ref in references])  # (K, P)
    eligible = np.flatnonzero((~trained_on).any(0))
    if len(eligible) == 0:
        raise ValueError("RMIA needs population records some reference model did not train on; the shadow pool "
                         "has none")
    rng = np.random.default_rng(setup.seed)
    chosen = np.sort(rng.choice(eligible, size=min(settings.population_size, len(eligible)), replace=False))
    population = pool.take(torch.as_tensor(chosen))
    probs = np.stack([true_label_probability(ref.model, population, setup.device) for ref in references])
    out = ~trained_on[:, chosen]
    population_p_out = (probs * out).sum(0) / out.sum(0)
    return RmiaAttack(candidates.ids.cpu().numpy(), p_out, population, population_p_out, settings.offline_a,
                      settings.gamma)


def restore(arrays: dict[str, np.ndarray], setup: AttackSetup) -> RmiaAttack:
    """Rebuild from stored statistics; the z records' inputs come from the shadow pool by id."""
    pool = setup.population
    order = torch.argsort(pool.ids.cpu())
    sorted_pool = pool.take(order)
    population = sorted_pool.take(positions(sorted_pool.ids.cpu().numpy(), arrays["population_ids"],
                                            "the shadow pool"))
    return RmiaAttack(arrays["ids"].copy(), arrays["p_out"].copy(), population, arrays["population_p_out"].copy(),
                      setup.params.rmia.offline_a, setup.params.rmia.gamma)

