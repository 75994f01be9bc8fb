"""The IAU step (paper Eq. 8) and the method registry."""

import copy

import pytest
import torch

from iau_core.experiment import model_builder, train_original
from iau_core.selection import select_forget_set
from iau_core.training import accuracy, per_sample_losses
from iau_core.unlearning import UnlearningTask, get_method, timed
from iau_core.unlearning.iau import iau, mean_loss_gradient

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(digits_bundle, digits_params):
    model, _ = train_original(digits_params, digits_bundle, CPU)
    forget, retain = digits_bundle.train.partition(select_forget_set(digits_bundle.train, digits_params.selection))
    return model, forget, retain


def make_task(model, forget, retain, bundle, params, eta):
    unlearning = params.unlearning.model_copy(update={"eta": eta})
    return UnlearningTask(model=model, retain=retain, forget=forget, val=bundle.val,
                          build_model=lambda: model_builder(params, bundle)(params.seed),
                          training=params.training, unlearning=unlearning, device=CPU, seed=params.seed)


def test_eta_zero_is_identity(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    unlearned = iau(make_task(model, forget, retain, digits_bundle, digits_params, eta=0.0))
    for a, b in zip(model.parameters(), unlearned.parameters(), strict=True):
        assert torch.equal(a, b)


def test_iau_raises_forget_loss_and_keeps_utility(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    before = copy.deepcopy(model.state_dict())
    unlearned = iau(make_task(model, forget, retain, digits_bundle, digits_params, eta=0.05))
    assert per_sample_losses(unlearned, forget, CPU).mean() > per_sample_losses(model, forget, CPU).mean()
    # Bound: one step may cost at most 5 points of test accuracy on digits.
    assert accuracy(unlearned, digits_bundle.test, CPU) >= accuracy(model, digits_bundle.test, CPU) - 5.0
    for key, value in model.state_dict().items():  # the deployed model is left untouched
        assert torch.equal(value, before[key])


def test_iau_moves_forget_loss_toward_the_retrained_model(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    task = make_task(model, forget, retain, digits_bundle, digits_params, eta=0.05)
    gold = get_method("retrain")(task)
    unlearned = iau(task)

    def forget_loss(m):
        return per_sample_losses(m, forget, CPU).mean().item()

    assert abs(forget_loss(unlearned) - forget_loss(gold)) < abs(forget_loss(model) - forget_loss(gold))


def test_iau_is_eq8_exactly(trained, digits_bundle, digits_params):
    """theta - eta * (mean grad on D_r - mean grad on D_f), computed here over whole sets at once."""
    model, forget, retain = trained
    unlearned = iau(make_task(model, forget, retain, digits_bundle, digits_params, eta=0.3))
    params = list(model.parameters())
    loss_r = torch.nn.functional.cross_entropy(model(retain.x), retain.y)
    loss_f = torch.nn.functional.cross_entropy(model(forget.x), forget.y)
    g_r, g_f = torch.autograd.grad(loss_r, params), torch.autograd.grad(loss_f, params)
    for p, new, gr, gf in zip(params, unlearned.parameters(), g_r, g_f, strict=True):
        assert torch.allclose(new, p - 0.3 * (gr - gf), atol=1e-6)


def test_gradient_accumulation_does_not_depend_on_batch_size(trained):
    model, forget, _ = trained
    small = mean_loss_gradient(model, forget, batch_size=7)
    whole = mean_loss_gradient(model, forget, batch_size=len(forget))
    for a, b in zip(small, whole, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_timed_run_and_registry(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    run = timed(get_method("iau"), make_task(model, forget, retain, digits_bundle, digits_params, eta=0.1))
    assert run.seconds > 0
    with pytest.raises(ValueError, match="known"):
        get_method("does-not-exist")
