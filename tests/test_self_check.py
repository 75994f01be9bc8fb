"""The self-check (iau_core/unlearning/self_check.py), the oracle-free target a stop rule may aim at: it sees a
model that memorised D_f, not one that never saw it, and a method stopped by it stops where it first passes."""

import copy
from dataclasses import replace

import torch
from conftest import training
from test_baselines import make_task
from test_deletion import noisy

from iau_core.recipe import model_builder
from iau_core.training import train_model
from iau_core.unlearning import get_method
from iau_core.unlearning.self_check import SelfCheck

CPU = torch.device("cpu")


def test_the_check_fails_a_memoriser_and_passes_a_model_that_never_saw_d_f(digits_bundle, digits_params):
    """On records the model cannot generalise from (fixed input noise, test_deletion.noisy), the one trained on
    D_f memorised it and the check sees that; the one trained without D_f treats it as unseen data."""
    recipe = training(max_epochs=60, patience=60, gr_alpha=0.0, lr=0.003, keep="last")
    members = noisy(digits_bundle.train.take(torch.arange(250)), 0.5, 1)
    val = noisy(digits_bundle.val, 0.5, 2)
    forget, retain = members.partition(members.ids.numpy()[:100])
    check = SelfCheck.of(forget, val, 2.0, CPU, 0)
    assert 0.5 < check.limit < 0.7 and len(check.nonmembers) >= 100
    build = model_builder(digits_params, digits_bundle)
    saw, never_saw = build(0), build(0)
    train_model(saw, members, val, recipe, CPU, 0)
    train_model(never_saw, retain, val, recipe, CPU, 0)
    assert check.auc(saw.eval()) > check.limit + 0.1, check.auc(saw)
    assert check.auc(never_saw.eval()) < check.limit - 0.03, check.auc(never_saw)
    broken = copy.deepcopy(never_saw)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    assert not check.passes(broken)


def test_a_method_stopped_by_the_check_stops_at_the_first_epoch_that_passes(trained, digits_bundle, digits_params):
    """Gradient ascent on D_f with a large step: the check passes after some epoch; the rule stops right there,
    and running every epoch with an observer shows no earlier epoch passed."""
    rule = {"target": "self_check", "val_drop_budget": 100.0}
    task = make_task(trained, digits_bundle, digits_params, "neggrad", stop_rule=rule, lr=0.01, epochs=8)
    check = SelfCheck.of(task.forget, task.val, 2.0, CPU, task.seed)
    stopped = get_method("neggrad")(task)
    kept = stopped.choices["epochs_kept"]
    assert stopped.choices["stop_rule.target"] == "self_check"
    assert stopped.choices["stop_rule.self_check_auc"] <= stopped.choices["stop_rule.self_check_limit"]
    assert check.passes(stopped.model) and "within chance" in stopped.choices["stop_rule.reason"]
    seen = []
    every = replace(task, observe=lambda epoch, model: seen.append(check.passes(model)),
                    unlearning=task.unlearning.model_copy(update={"stop_rule": task.unlearning.stop_rule.model_copy(
                        update={"stop_at_heldout_loss": False})}))
    get_method("neggrad")(every)
    assert seen.index(True) + 1 == kept


def test_over_budget_continue_trains_past_an_epoch_that_cost_accuracy_and_never_returns_it(trained, digits_bundle,
                                                                                           digits_params):
    """An epoch that ruins validation accuracy, then one that recovers it: `stop` undoes the first and returns the
    deployed model; `continue` goes on and returns the recovered epoch, never the ruined one."""
    from iau_core.unlearning.loop import run_epochs

    deployed = {k: v.clone() for k, v in trained[0].state_dict().items()}

    def outcome(over_budget: str) -> dict:
        rule = {"over_budget": over_budget, "stop_at_heldout_loss": False}
        task = make_task(trained, digits_bundle, digits_params, stop_rule=rule)
        model = task.copy_model()

        def one_epoch(epoch: int) -> None:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(torch.zeros_like(p) if epoch == 1 else deployed[name] * (1 + 1e-4 * epoch))

        return run_epochs(model, task, 3, one_epoch)

    stopped, continued = outcome("stop"), outcome("continue")
    assert stopped["epochs_kept"] == 0 and "epoch 1 would cost" in stopped["stop_rule.reason"]
    assert continued["epochs_kept"] == 3 and continued["stop_rule.val_acc_drop"] <= 1.0
