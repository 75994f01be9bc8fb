"""The public IAU code's step (iau_adam) and the classic partial retraining of the last k layers (eu_k, cf_k), on
the real digits data: each does what its source says, and the observer a study hooks in changes nothing."""

import copy
from dataclasses import replace

import pytest
import torch
from test_baselines import NO_STOP, make_task

from iau_core.training import accuracy
from iau_core.unlearning import get_method
from iau_core.unlearning.gradients import iau_direction, summed_gradient
from iau_core.unlearning.last_layers import last_layers

CPU = torch.device("cpu")


def test_iau_adam_is_one_sign_step_of_the_public_codes_gradient(trained, digits_bundle, digits_params):
    """Adam's bias-corrected first step: every weight moves by lr * g / (|g| + 1e-8) against g = mean CE(D_r) -
    mean CE(D_f)'s gradient, so by lr wherever |g| is well above 1e-8, and never by more."""
    model, forget, retain = trained
    lr = 1e-3
    out = get_method("iau_adam")(make_task(trained, digits_bundle, digits_params, "iau_adam", lr=lr)).model
    g = iau_direction(copy.deepcopy(model).eval(), retain, forget, 512, "mean")
    for before, after, grad in zip(model.parameters(), out.parameters(), g, strict=True):
        moved = after.detach() - before.detach()
        assert torch.allclose(moved, -lr * grad / (grad.abs() + 1e-8), atol=1e-7)
        big = grad.abs() > 1e-5
        assert torch.allclose(moved[big].abs(), torch.full_like(moved[big], lr), rtol=1e-2)


def test_iau_adam_reads_d_r_from_the_cached_summed_gradient(trained, digits_bundle, digits_params):
    """A nightly batch holds D's summed gradient: the step is the same as reading D_r."""
    model, forget, retain = trained
    whole = type(retain)(torch.cat([retain.x, forget.x]), torch.cat([retain.y, forget.y]),
                         torch.cat([retain.ids, forget.ids]))
    task = make_task(trained, digits_bundle, digits_params, "iau_adam", steps=2)
    plain = get_method("iau_adam")(task).model
    cached = get_method("iau_adam")(replace(task, summed_gradient=summed_gradient(model, whole, 512))).model
    for a, b in zip(plain.parameters(), cached.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(("name", "k"), [("eu_k", 1), ("eu_k", 2), ("cf_k", 2)])
def test_the_last_k_layers_alone_change(trained, digits_bundle, digits_params, name, k):
    """The layers below the last k are the deployed ones bit for bit; the last k moved (eu_k: from a fresh draw,
    so no weight there is the deployed one) and the model still classifies D_r."""
    model = trained[0]
    out = get_method(name)(make_task(trained, digits_bundle, digits_params, name, k=k, epochs=3)).model
    changed, kept = last_layers(out, k), last_layers(model, k)
    frozen = {id(p) for layer in changed for p in layer.parameters()}
    for (name_, after), before in zip(out.named_parameters(), model.parameters(), strict=True):
        if id(after) in frozen:
            assert not torch.equal(after, before), name_
        else:
            assert torch.equal(after, before), name_
    if name == "eu_k":  # reinitialised: nothing of the deployed layer's weights is left
        for mine, deployed in zip(changed, kept, strict=True):
            assert (mine.weight - deployed.weight).abs().min() > 0
    assert all(p.requires_grad for p in out.parameters())
    assert accuracy(out, trained[2], CPU) > 80


def test_an_observer_sees_every_epoch_and_changes_nothing(trained, digits_bundle, digits_params):
    """A study scores the model after each epoch (studies/frontier.py); the run must end where it would alone."""
    seen = []

    def observe(epoch, model):
        seen.append((epoch, accuracy(model, digits_bundle.val, CPU)))

    for name in ("finetune", "eu_k"):
        seen.clear()
        task = make_task(trained, digits_bundle, digits_params, name, stop_rule=NO_STOP, epochs=3)
        alone = get_method(name)(task).model
        watched = get_method(name)(replace(task, observe=observe)).model
        assert [e for e, _ in seen] == [1, 2, 3], name
        for a, b in zip(alone.parameters(), watched.parameters(), strict=True):
            assert torch.equal(a, b), name
