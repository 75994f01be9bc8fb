"""Offline RMIA's math (Zarifzadeh et al. 2024) on cases where membership is known exactly, and what its score
must be invariant to. The attack on real models is tested beside LiRA in test_privacy.py."""

import numpy as np
import pytest

from iau_core.attacks import roc
from iau_core.attacks.rmia import offline_marginal, rmia_scores


def synthetic(seed=0, n=2000):
    """Records of very different difficulty (Pr_OUT from 0.05 to 0.95); a member's target probability is 30% above
    what OUT models give it, a non-member's is what they give, both with the same small noise."""
    rng = np.random.default_rng(seed)
    p_out = rng.uniform(0.05, 0.7, n)
    member = rng.random(n) < 0.5
    target = p_out * np.exp(rng.normal(0, 0.1, n)) * np.where(member, 1.3, 1.0)
    z_out = rng.uniform(0.05, 0.7, 1000)
    z_target = z_out * np.exp(rng.normal(0, 0.1, 1000))
    return p_out, member, target, z_out, z_target


def scores_of(p_out, target, z_out, z_target, a=1.0, gamma=1.0):
    return rmia_scores(target / offline_marginal(p_out, a), z_target / offline_marginal(z_out, a), gamma)


def test_rmia_calibrates_per_record_where_the_raw_probability_cannot():
    """Difficulty swamps membership in the raw probability; RMIA divides it out. A wrong ratio (Pr(x) left out,
    or inverted) loses that."""
    p_out, member, target, z_out, z_target = synthetic()
    rmia = roc(*(lambda s: (s[member], s[~member]))(scores_of(p_out, target, z_out, z_target)))
    raw = roc(target[member], target[~member])
    assert rmia.auc > 0.9 > raw.auc + 0.2, (rmia.auc, raw.auc)
    assert rmia.tpr_at_1pct_fpr > 0.2 > raw.tpr_at_1pct_fpr
    inverted = rmia_scores(offline_marginal(p_out, 1.0) / target, offline_marginal(z_out, 1.0) / z_target, 1.0)
    assert roc(inverted[member], inverted[~member]).auc < 0.1


def test_offline_rmia_with_the_papers_a_on_the_papers_model():
    """The paper's offline rule assumes an IN model gives Pr_IN = a Pr_OUT + (1 - a). Members drawn that way (a =
    0.8) are found far better by RMIA with that a than by the raw probability, and than with Pr(x) left out."""
    rng = np.random.default_rng(3)
    p_out = rng.uniform(0.05, 0.7, 2000)
    member = rng.random(2000) < 0.5
    target = np.where(member, 0.8 * p_out + 0.2, p_out) * np.exp(rng.normal(0, 0.1, 2000))
    z_out = rng.uniform(0.05, 0.7, 1000)
    z_target = z_out * np.exp(rng.normal(0, 0.1, 1000))
    offline = scores_of(p_out, target, z_out, z_target, a=0.8)
    uncalibrated = rmia_scores(target, z_target, 1.0)  # Pr(x) = Pr(z) = 1: the raw probability against z
    auc = roc(offline[member], offline[~member]).auc
    assert auc > roc(target[member], target[~member]).auc + 0.1
    assert auc > roc(uncalibrated[member], uncalibrated[~member]).auc + 0.1


def test_offline_marginal_is_the_papers_linear_rule():
    assert offline_marginal(np.array([0.4]), 1.0) == pytest.approx(0.4)  # a = 1: IN looks like OUT
    assert offline_marginal(np.array([0.4]), 0.0) == pytest.approx(0.7)  # a = 0: halfway to an IN model's 1
    assert offline_marginal(np.array([0.4]), 0.3) == pytest.approx(0.5 * (1.3 * 0.4 + 0.7))


def test_rmia_score_is_invariant_to_what_it_must_be():
    p_out, member, target, z_out, z_target = synthetic(1)
    base = scores_of(p_out, target, z_out, z_target, a=0.3)
    assert ((0 <= base) & (base <= 1)).all()
    # a target that is uniformly more (or less) confident everywhere: the population comparison cancels it
    assert np.array_equal(scores_of(p_out, target * 0.5, z_out, z_target * 0.5, a=0.3), base)
    # the order of the population records does not matter
    order = np.random.default_rng(2).permutation(len(z_out))
    assert np.array_equal(scores_of(p_out, target, z_out[order], z_target[order], a=0.3), base)
    # a target that behaves exactly like the OUT models sees no member: every record gets the same score
    same = scores_of(p_out, p_out, z_out, z_out, a=1.0)
    assert np.allclose(same, same[0]) and abs(same[0] - 1.0) < 1e-12
    # a stricter gamma can only lower a record's score
    assert (scores_of(p_out, target, z_out, z_target, a=0.3, gamma=2.0) <= base).all()
