"""IMU, SSD and USGD on the real digits data: each must do what its paper promises, in a way that fails if the math
is wrong (a sign, a scale, a selection, a record read that must not be)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from iau_core.data import Split
from iau_core.recipe import model_builder
from iau_core.training import accuracy, per_sample_losses
from iau_core.unlearning import UnlearningTask, get_method
from iau_core.unlearning.imu import classifier_inputs, classifier_layer, influence_scores, influence_weights
from iau_core.unlearning.loop import joined
from iau_core.unlearning.ssd import importance
from iau_core.unrolled_sgd import sd_losses, single_gradient_unlearn, train_unrolled

CPU = torch.device("cpu")
NO_STOP = {"stop_at_heldout_loss": False, "val_drop_budget": 100.0}


def make_task(trained, bundle, params, method, retain=None, stop_rule=None, **settings):
    model, forget, own_retain = trained
    update = {method: getattr(params.unlearning, method).model_copy(update=settings)}
    if stop_rule is not None:
        update["stop_rule"] = params.unlearning.stop_rule.model_copy(update=stop_rule)
    return UnlearningTask(model=model, retain=own_retain if retain is None else retain, forget=forget,
                          val=bundle.val, build_model=model_builder(params, bundle), training=params.training,
                          unlearning=params.unlearning.model_copy(update=update), device=CPU, seed=params.seed)


def mean_loss(model, split):
    return per_sample_losses(model, split, CPU).mean().item()


class PoisonedSplit(Split):
    """A retained set that raises on any read: a method that claims to need no retained data must never touch it."""

    def __getattribute__(self, name):
        if name in {"x", "y", "ids", "take", "partition", "to", "__len__"}:
            raise AssertionError(f"the retained set was read ({name})")
        return super().__getattribute__(name)

    def __len__(self):
        raise AssertionError("the retained set was read (len)")


# --- IMU ---------------------------------------------------------------------------------------------------------

def test_imu_influence_is_the_classifier_level_formula_record_by_record(trained):
    """Autograd on the last layer, record by record, against the closed form the method uses."""
    model, forget, _ = trained
    head = classifier_layer(model)
    h = classifier_inputs(model, forget)
    fast = influence_scores(head, h, forget.y, damping=1e-3)
    grads = []
    for i in range(len(forget)):
        loss = F.cross_entropy(head(h[i:i + 1]), forget.y[i:i + 1])
        w, b = torch.autograd.grad(loss, [head.weight, head.bias])
        grads.append(torch.cat([w, b[:, None]], 1))
    g = torch.stack(grads)
    fisher = g.pow(2).mean(0)
    inverse = 1.0 / (fisher + 1e-3 * fisher.mean())
    slow = torch.stack([(g.mean(0) * inverse * gi).sum() for gi in g])
    assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        assert torch.equal(head(h), model(forget.x))  # h really is what the output layer reads


def test_imu_weights_follow_influence_and_keep_the_total_of_uniform_ascent():
    influence = torch.tensor([3.0, -1.0, 0.5, 2.0, 0.0])
    w = influence_weights(influence, keep_fraction=1.0, temperature=1.0)
    assert w.sum().item() == pytest.approx(5.0) and (w > 0).all()
    assert torch.equal(w.argsort(), influence.argsort())  # the more influential, the heavier
    top = influence_weights(influence, keep_fraction=0.4, temperature=1.0)
    assert torch.equal(top > 0, torch.tensor([True, False, False, True, False]))
    assert top.sum().item() == pytest.approx(2.0)


def test_imu_reads_no_retained_data_and_changes_only_the_classifier_layer(trained, digits_bundle, digits_params):
    model, forget, _ = trained
    poisoned = PoisonedSplit(torch.full((3, 1, 8, 8), float("nan")), torch.zeros(3, dtype=torch.long),
                             torch.arange(3))
    task = make_task(trained, digits_bundle, digits_params, "imu", retain=poisoned, stop_rule=NO_STOP,
                     lr=0.05, epochs=3)
    out = get_method("imu")(task)
    head_name = {id(p): n for n, p in out.model.named_parameters()}
    head = {head_name[id(p)] for p in classifier_layer(out.model).parameters()}
    before, after = model.state_dict(), out.model.state_dict()
    for name in before:
        if name in head:
            assert not torch.equal(before[name], after[name]), name
        else:
            assert torch.equal(before[name], after[name]), name  # features and buffers exactly as deployed
    assert mean_loss(out.model, forget) > mean_loss(model, forget) + 0.1  # the ascent ascended


def test_imu_step_is_the_influence_weighted_ascent(trained, digits_bundle, digits_params):
    """One full-batch SGD step (no momentum yet on a first step, no weight decay): the head moves by
    lr * grad of mean(w_i * CE_i) with IMU's weights, not by uniform GA's."""
    model, forget, _ = trained
    params = digits_params.model_copy(update={"training": digits_params.training.model_copy(
        update={"batch_size": len(forget)})})
    task = make_task(trained, digits_bundle, params, "imu", stop_rule=NO_STOP, lr=0.1, epochs=1,
                     weight_decay=0.0, temperature=0.5)
    out = get_method("imu")(task).model
    head = classifier_layer(model)
    h = classifier_inputs(model, forget)
    w = influence_weights(influence_scores(head, h, forget.y, 1e-3), 1.0, 0.5)
    ce = F.cross_entropy(head(h), forget.y, reduction="none")
    gw, gb = torch.autograd.grad((w * ce).mean(), [head.weight, head.bias], retain_graph=True)
    new = classifier_layer(out)
    assert torch.allclose(new.weight, head.weight + 0.1 * gw, atol=1e-6)
    assert torch.allclose(new.bias, head.bias + 0.1 * gb, atol=1e-6)
    uniform = torch.autograd.grad(ce.mean(), [head.weight])[0]
    assert not torch.allclose(new.weight, head.weight + 0.1 * uniform, atol=1e-4)


# --- SSD ---------------------------------------------------------------------------------------------------------

def test_ssd_dampens_exactly_the_selected_parameters_by_beta(trained, digits_bundle, digits_params):
    """Recompute both importances independently: parameters with I_Df <= alpha * I_D are bit-identical, the
    others are multiplied by min(lambda * I_D / I_Df, 1)."""
    model, forget, retain = trained
    alpha, lam = 2.0, 1.0  # a lower alpha than the paper's 10 so that a random 10% of digits selects some
    out = get_method("ssd")(make_task(trained, digits_bundle, digits_params, "ssd", alpha=alpha,
                                      dampening=lam)).model
    data = joined(retain, forget)

    def manual(split):
        total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        chunks = list(torch.arange(len(split)).split(128))
        for idx in chunks:
            grads = torch.autograd.grad(F.cross_entropy(model(split.x[idx]), split.y[idx]),
                                        list(model.parameters()))
            for (n, _), g in zip(model.named_parameters(), grads, strict=True):
                total[n] += g * g / len(chunks)
        return total

    i_f, i_d = manual(forget), manual(data)
    selected = 0
    for (n, p), q in zip(model.named_parameters(), out.parameters(), strict=True):
        where = i_f[n] > alpha * i_d[n]
        selected += int(where.sum())
        assert torch.equal(p[~where], q[~where]), n
        beta = (lam * i_d[n][where] / i_f[n][where]).clamp(max=1.0)
        assert torch.allclose(q[where], p[where] * beta, rtol=1e-4, atol=1e-7), n
    assert selected > 0
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), out.buffers(), strict=True))


def test_ssd_importance_is_the_mean_squared_batch_gradient(trained):
    model, forget, _ = trained
    imp = importance(model, forget, batch_size=len(forget))  # one batch: the squared full gradient
    g = torch.autograd.grad(F.cross_entropy(model(forget.x), forget.y), list(model.parameters()))
    for (n, _), gi in zip(model.named_parameters(), g, strict=True):
        assert torch.allclose(imp[n], gi * gi, rtol=1e-5, atol=1e-12), n


def test_ssd_forgets_a_class_more_than_the_rest_of_d(trained, digits_bundle, digits_params):
    """Class forgetting, the paper's headline setting, at its alpha 10 and lambda 1: the forgotten class loses
    at least twice the accuracy the other classes lose (measured on digits: 93.9 -> 47.0 against 94.8 ->
    79.2; LeNet5 on 600 records shares more weights between classes than ResNet18 on CIFAR)."""
    model = trained[0]
    train = digits_bundle.train
    is_three = train.y == 3
    forget, retain = train.take(is_three.nonzero().squeeze(1)), train.take((~is_three).nonzero().squeeze(1))
    out = get_method("ssd")(make_task((model, forget, retain), digits_bundle, digits_params, "ssd"))
    assert out.choices["dampened_share"] > 0
    forget_drop = accuracy(model, forget, CPU) - accuracy(out.model, forget, CPU)
    retain_drop = accuracy(model, retain, CPU) - accuracy(out.model, retain, CPU)
    assert forget_drop > 2 * retain_drop and forget_drop > 20


# --- USGD --------------------------------------------------------------------------------------------------------

def test_usgd_counts_and_update_are_the_unrolled_first_order_terms(trained, digits_bundle, digits_params):
    _, forget, retain = trained
    data = joined(retain, forget)
    settings = digits_params.unlearning.usgd.model_copy(update={"epochs": 2, "batch_size": 100})
    run = train_unrolled(model_builder(digits_params, digits_bundle)(0), data, settings, seed=0)
    assert torch.equal(run.times_sampled, torch.full((len(data),), 2))  # every record once per epoch
    assert torch.allclose(run.step_weight, torch.full((1, len(data)), 2 * settings.lr / 100, dtype=torch.float64))
    out = single_gradient_unlearn(run, forget, settings)
    start = copy.deepcopy(run.model)
    start.load_state_dict(run.checkpoints[0])
    start.train()
    losses = sd_losses(start(forget.x), forget.y, settings.sd_weight)
    grads = torch.autograd.grad((2 * settings.lr / 100) * losses.sum(), list(start.parameters()))
    for p, q, g in zip(run.model.parameters(), out.parameters(), grads, strict=True):
        assert torch.allclose(q, p + g, atol=1e-6)


@pytest.mark.parametrize("checkpoint_every", [0, 1])
def test_usgd_moves_toward_the_model_retrained_on_the_same_batches_without_d_f(trained, digits_bundle,
                                                                            digits_params, checkpoint_every):
    """The paper's verification error: the L2 distance to naive retraining on the same batch sequence minus
    D_f. Where the first-order unrolling holds (few small steps), single-gradient unlearning must shrink it,
    at the initial weights and with a checkpoint per epoch; a wrong sign or scale would grow it."""
    _, forget, retain = trained
    data = joined(retain, forget)
    settings = digits_params.unlearning.usgd.model_copy(update={"epochs": 2, "lr": 0.02, "batch_size": 32,
                                                                "checkpoint_every": checkpoint_every})
    build = model_builder(digits_params, digits_bundle)
    run = train_unrolled(build(0), data, settings, seed=0)
    assert len(run.checkpoints) == (1 if checkpoint_every == 0 else 2)
    retrained = train_unrolled(build(0), data, settings, seed=0, exclude_ids=forget.ids.numpy()).model
    unlearned = single_gradient_unlearn(run, forget, settings)

    def distance(a, b):
        return torch.sqrt(sum(((p - q) ** 2).sum() for p, q in zip(a.parameters(), b.parameters(), strict=True)))

    assert distance(unlearned, retrained) < 0.6 * distance(run.model, retrained)


def test_usgd_method_unlearns_its_own_original_trained_from_the_deployed_initial_weights(trained, digits_bundle,
                                                                                        digits_params):
    """The method is exactly: train by USGD's recipe on D from build_model(seed), then the single-gradient
    update; the deployed model is untouched and D_f's loss rises."""
    model, forget, retain = trained
    before = copy.deepcopy(model.state_dict())
    short = {"epochs": 2, "lr": 0.02, "batch_size": 32}
    out = get_method("usgd")(make_task(trained, digits_bundle, digits_params, "usgd", **short))
    settings = digits_params.unlearning.usgd.model_copy(update=short)
    build = model_builder(digits_params, digits_bundle)
    expected = single_gradient_unlearn(train_unrolled(build(digits_params.seed), joined(retain, forget), settings,
                                                      digits_params.seed), forget, settings)
    assert all(torch.equal(p, q) for p, q in zip(out.model.parameters(), expected.parameters(), strict=True))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    c = out.choices
    assert c["usgd.times_sampled"] == 2
    assert c["usgd.unlearned_forget_loss"] > c["usgd.original_forget_loss"]
