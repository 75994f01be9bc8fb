"""Membership inference: the attacks must see membership where there is some to see."""

import numpy as np
import pytest
import torch
from conftest import training

from iau_core.attacks import (
    attack_features,
    fit_lira,
    fit_shadow_attack,
    label_matched,
    logit_confidence,
    loss_attack,
    roc,
    train_reference_models,
)
from iau_core.config import LiraParams, MiaParams
from iau_core.data import Split
from iau_core.recipe import model_builder
from iau_core.training import train_model

CPU = torch.device("cpu")


def test_attack_features_shape_and_meaning():
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    f = attack_features(logits, torch.tensor([0]), 3)
    assert f.shape == (1, 6)
    assert torch.allclose(f[0, 3:], torch.tensor([1.0, 0.0, 0.0]))
    assert f[0, 0] < 0 and f[0, 0] > -0.01  # confident and right: softmax - onehot is near 0


OVERFIT = training(max_epochs=60, patience=60, gr_alpha=0.0, lr=0.003)


@pytest.fixture(scope="module")
def overfit_setting(digits_bundle, digits_params):
    """Few training records (60), many epochs, no gradient restriction: members and non-members differ. The
    attacker's 4 reference models each train on 60 records of the shadow pool with the same recipe."""
    members = digits_bundle.train.take(torch.arange(60))
    victim = model_builder(digits_params, digits_bundle)(0)
    train_model(victim, members, digits_bundle.val, OVERFIT, CPU, 0)
    pool = digits_bundle.shadow_pool.take(torch.arange(120))
    references = train_reference_models(pool, model_builder(digits_params, digits_bundle), OVERFIT, 4, CPU, 0)
    nonmembers = digits_bundle.test.take(torch.arange(300))
    return victim, members, nonmembers, references


def test_shadow_attack_beats_chance_on_an_overfit_model(overfit_setting, digits_bundle):
    """An attack trained only on the shadow pool must tell the victim's members apart. Digits generalizes
    well, so the gap is modest: measured 62.5% balanced accuracy and loss AUC 0.66 (chance: 50% and 0.5)."""
    victim, members, nonmembers, references = overfit_setting
    attack, report = fit_shadow_attack(references, MiaParams(num_shadow=2, epochs=200), digits_bundle.num_classes,
                                       CPU, 0)
    strength = attack.balanced_accuracy(victim, members, nonmembers.take(torch.arange(60)), CPU)
    assert strength > 58.0, (strength, report)
    assert loss_attack(victim, members, nonmembers, CPU).auc > 0.6


def test_the_shadow_attacks_mlp_stops_when_its_held_out_loss_stops_falling():
    """Labels that are coin flips: nothing generalizes, so the held-out loss bottoms out within a few epochs and
    the MLP stops long before its cap, keeping that epoch's weights. Without a holdout it trains every epoch."""
    from iau_core.attacks.shadow import _fit_attack
    gen = torch.Generator().manual_seed(0)
    features, labels = torch.randn(2000, 20, generator=gen), torch.randint(0, 2, (2000,), generator=gen).float()
    mlp, _, epochs = _fit_attack(features, labels, MiaParams(epochs=100, patience=3), 0)
    assert 1 <= epochs <= 20, epochs
    _, _, all_epochs = _fit_attack(features, labels, MiaParams(epochs=4, holdout=0.0), 0)
    assert all_epochs == 4


def test_lira_sees_membership_on_an_overfit_model(overfit_setting, digits_bundle):
    """Offline LiRA from 4 reference models that never saw a victim record: far above chance, and a model
    that never saw the members (trained on other records) looks like chance to it."""
    victim, members, nonmembers, references = overfit_setting
    candidates = Split(torch.cat([members.x, nonmembers.x]), torch.cat([members.y, nonmembers.y]),
                       torch.cat([members.ids, nonmembers.ids]))
    lira = fit_lira(references, candidates, LiraParams(num_reference=4), CPU)
    seen = lira.roc(victim, members, nonmembers, CPU)
    assert seen.auc > 0.65, seen.auc  # measured 0.685 (the loss attack: 0.66)
    outsider = model_builder(Params_for(digits_bundle), digits_bundle)(1)
    train_model(outsider, digits_bundle.train.take(torch.arange(60, 120)), digits_bundle.val, OVERFIT, CPU, 1)
    blind = lira.roc(outsider, members, nonmembers, CPU)
    assert abs(blind.auc - 0.5) < 0.1, blind.auc
    with pytest.raises(ValueError, match="no reference statistics"):
        lira.scores(victim, digits_bundle.val.take(torch.arange(3)), CPU)


def Params_for(bundle):  # noqa: N802 - a tiny factory for the architecture only
    from iau_core.config import Params

    return Params()


def test_logit_confidence_is_log_odds_of_the_true_class():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 1])
    p = logits.softmax(1)[torch.arange(2), y]
    assert torch.allclose(logit_confidence(logits, y), torch.log(p / (1 - p)), atol=1e-5)


def test_roc_reads_the_one_percent_operating_point():
    rng = np.random.default_rng(0)
    nonmembers = rng.normal(0, 1, 1000)
    perfect = roc(nonmembers + 100, nonmembers)
    assert perfect.auc == 1.0 and perfect.tpr_at_1pct_fpr == 1.0
    same = roc(rng.normal(0, 1, 1000), nonmembers)
    assert abs(same.auc - 0.5) < 0.05 and same.tpr_at_1pct_fpr < 0.05
    # ten members scored above every non-member, the rest below: TPR at 1% FPR is exactly their share
    mixed = roc(np.concatenate([np.full(10, 10.0), np.full(90, -10.0)]), nonmembers)
    assert mixed.tpr_at_1pct_fpr == pytest.approx(0.1)


def test_roc_reads_the_tenth_of_a_percent_operating_point():
    """Carlini et al. 2022's low-FPR point, read the same way as the 1% one (the largest TPR whose FPR <= 0.1%)."""
    nonmembers = np.arange(2000.0)  # 0.1% FPR = the top 2 non-members, 1% = the top 20
    members = np.concatenate([np.full(20, 5000.0),  # above every non-member
                              np.full(30, 1998.5),  # above all but the top one: FPR 1/2000
                              np.full(10, 1985.5),  # above the top 14: FPR 0.7%
                              np.full(40, -1.0)])
    stepped = roc(members, nonmembers)
    assert stepped.tpr_at_0_1pct_fpr == pytest.approx(0.5) and stepped.tpr_at_1pct_fpr == pytest.approx(0.6)
    # exactly 1,000 non-members: 1/1000 is the 0.1% point itself
    assert roc(np.full(10, 998.5), np.arange(1000.0)).tpr_at_0_1pct_fpr == pytest.approx(1.0)
    # a known distribution: members N(2, 1) against non-members N(0, 1) have TPR 1 - Phi(Phi^-1(0.999) - 2) = 0.138
    from scipy.stats import norm
    rng = np.random.default_rng(0)
    gauss = roc(rng.normal(2, 1, 20000), rng.normal(0, 1, 20000))
    assert gauss.tpr_at_0_1pct_fpr == pytest.approx(norm.sf(norm.ppf(0.999) - 2), abs=0.03)
    assert gauss.tpr_at_0_1pct_fpr < gauss.tpr_at_1pct_fpr


def test_below_a_thousand_nonmembers_the_tenth_of_a_percent_point_is_the_tpr_at_fpr_zero():
    """With 300 non-members the lowest nonzero FPR is 1/300 > 0.1%: the rate is the share of members scored
    strictly above every non-member (a tie with the top non-member already costs a false positive)."""
    nonmembers = np.arange(300.0)
    members = np.concatenate([np.full(5, 1000.0), np.full(5, 299.0), np.full(90, -1.0)])
    assert roc(members, nonmembers).tpr_at_0_1pct_fpr == pytest.approx(0.05)
    assert roc(np.full(100, 298.0), nonmembers).tpr_at_0_1pct_fpr == 0.0  # the top non-member outscores them all


def test_shadow_data_never_touches_the_victims(digits_bundle):
    shadow = set(digits_bundle.shadow_pool.ids.tolist())
    victim = set(torch.cat([digits_bundle.train.ids, digits_bundle.val.ids, digits_bundle.test.ids]).tolist())
    assert not shadow & victim


def test_label_matched_nonmembers_follow_the_forget_sets_labels(digits_bundle):
    """Outliers are mostly one class; their non-members must be too, drawn without repeats, as many as the
    rarest needed class allows."""
    test = digits_bundle.test
    like = Split(test.x[:10], torch.tensor([3] * 8 + [5] * 2), test.ids[:10])
    matched = label_matched(test, like, seed=0)
    labels = matched.y.numpy()
    threes, fives = (labels == 3).sum(), (labels == 5).sum()
    assert set(labels) == {3, 5}
    assert threes == (test.y == 3).sum().item()  # the class D_f needs most is used up: as many as possible
    assert abs(threes / 4 - fives) <= 1  # 80/20, like D_f
    assert len(set(matched.ids.tolist())) == len(matched)


def test_label_matching_skips_labels_with_no_heldout_records(digits_bundle):
    test = digits_bundle.test
    without_sevens = test.take(torch.nonzero(test.y != 7).squeeze(1))
    like = Split(test.x[:4], torch.tensor([7, 7, 2, 2]), test.ids[:4])
    matched = label_matched(without_sevens, like, seed=0)
    assert set(matched.y.tolist()) == {2} and len(matched) == (without_sevens.y == 2).sum().item()
    with pytest.raises(ValueError, match="nothing to match"):
        label_matched(without_sevens, Split(test.x[:2], torch.tensor([7, 7]), test.ids[:2]), seed=0)


def overfit_setup(digits_params, digits_bundle, members, nonmembers, **rmia):
    from iau_core.attacks import AttackSetup

    params = digits_params.model_copy(update={"rmia": digits_params.rmia.model_copy(update=rmia)})
    candidates = Split(torch.cat([members.x, nonmembers.x]), torch.cat([members.y, nonmembers.y]),
                       torch.cat([members.ids, nonmembers.ids]))
    return AttackSetup(params, candidates, digits_bundle.shadow_pool.take(torch.arange(120)),
                       digits_bundle.num_classes, CPU, 0)


def test_rmia_sees_membership_on_an_overfit_model(overfit_setting, digits_bundle, digits_params):
    """Offline RMIA on LiRA's 4 reference models: far above chance on the overfit victim, chance on a model that
    never saw the members; its population records are pool records some reference did not train on."""
    from iau_core.attacks import fit_attack

    victim, members, nonmembers, references = overfit_setting
    setup = overfit_setup(digits_params, digits_bundle, members, nonmembers)
    rmia = fit_attack("rmia", references, setup)
    trained_by_all = np.all([np.isin(rmia.population.ids.numpy(), r.members.ids.numpy()) for r in references], 0)
    assert not trained_by_all.any() and len(rmia.population) > 100
    seen = rmia.roc(victim, members, nonmembers, CPU)
    assert seen.auc > 0.65, seen.auc
    outsider = model_builder(Params_for(digits_bundle), digits_bundle)(1)
    train_model(outsider, digits_bundle.train.take(torch.arange(60, 120)), digits_bundle.val, OVERFIT, CPU, 1)
    assert abs(rmia.roc(outsider, members, nonmembers, CPU).auc - 0.5) < 0.1
    with pytest.raises(ValueError, match="no reference statistics"):
        rmia.scores(victim, digits_bundle.val.take(torch.arange(3)), CPU)


def test_every_registered_attack_fits_scores_and_restores(overfit_setting, digits_bundle, digits_params):
    """The registry's contract, for each name in ATTACK_NAMES: fitted on reference models, one score per record,
    higher for the overfit victim's members on average, and rebuilt from its stored arrays to the same scores."""
    from iau_core.attacks import ATTACK_NAMES, fit_all, restore_attack

    victim, members, nonmembers, references = overfit_setting
    setup = overfit_setup(digits_params, digits_bundle, members, nonmembers)
    attacks = fit_all(references, setup)
    assert tuple(attacks) == ATTACK_NAMES
    for name, attack in attacks.items():
        scores = attack.scores(victim, members, CPU)
        assert scores.shape == (len(members),) and np.isfinite(scores).all(), name
        assert attack.roc(victim, members, nonmembers, CPU).auc > 0.55, name
        again = restore_attack(name, {k: np.array(v) for k, v in attack.arrays().items()}, setup)
        assert np.array_equal(again.scores(victim, members, CPU), scores), name
    with pytest.raises(ValueError, match="unknown attack"):
        restore_attack("nope", {}, setup)
